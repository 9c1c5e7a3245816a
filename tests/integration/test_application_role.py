"""The application role the functions connect as: the rows the pipeline touches, and
nothing else. (Every pipeline and initiator test connects as it too.)"""

from __future__ import annotations

from dataclasses import replace

import psycopg2
import pytest

from devstack.peers.postgres import query
from escalator.config import DatabaseSettings
from escalator.database import Database
from escalator.migrations import APPLICATION_ROLE, default_sql_dir, migrate

FORBIDDEN = [
    "CREATE TABLE intruder (id int)",
    "ALTER TABLE notification ADD COLUMN intruder int",
    "DROP TABLE request_log",
    "TRUNCATE process CASCADE",
    "DELETE FROM notification",
    "SELECT rolname, rolpassword FROM pg_authid",
    "SELECT * FROM schema_migration",
    "UPDATE property SET property_value = '{}'",
    "CREATE ROLE intruder",
]


def test_the_functions_connect_as_the_application_role(application_url: str) -> None:
    assert query(application_url, "SELECT current_user") == [(APPLICATION_ROLE,)]
    flags = query(
        application_url,
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
    )
    assert flags == [(False, False, False)]


@pytest.mark.parametrize("statement", FORBIDDEN)
def test_the_application_role_cannot(application_url: str, statement: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query(application_url, statement)


def test_the_application_role_can_do_what_the_pipeline_does(
    application_url: str, database_url: str
) -> None:
    ((process,),) = query(
        application_url, "INSERT INTO process (process_id) VALUES ('r1') RETURNING id"
    )
    query(
        application_url,
        "INSERT INTO notification (process_ref, position, channel, target, due_at)"
        " VALUES (%s, 0, 'console', 'label', now())",
        (process,),
    )
    query(
        application_url, "UPDATE notification SET attempts = 1 WHERE process_ref = %s", (process,)
    )
    query(application_url, "SELECT id FROM process WHERE id = %s FOR UPDATE", (process,))
    query(
        application_url,
        "INSERT INTO request_log (message_id, outcome) VALUES ('m1', 'started')"
        " ON CONFLICT (message_id) DO NOTHING RETURNING 1",
    )
    assert query(application_url, "SELECT count(*) FROM property") == [(0,)]
    assert query(database_url, "SELECT attempts FROM notification") == [(1,)]


def test_every_new_connection_asks_for_a_fresh_password(application_url: str) -> None:
    # GIVEN settings whose password comes from a signer (an IAM token on AWS)
    settings = DatabaseSettings.from_url(application_url)
    fixed = settings.password
    assert fixed is not None
    asked: list[int] = []

    def signer() -> str:
        asked.append(1)
        return fixed()

    database = Database(replace(settings, password=signer))

    # WHEN a warm connection is reused, then lost and opened again
    first = database.connection()
    assert database.connection() is first
    database.discard()
    database.connection()

    # THEN the signer was asked once per new connection, never for a reused one
    assert len(asked) == 2
    database.discard()


# What the application role may do, as documented: sql/0002_application_role.sql ("It
# reads and writes the rows Escalator's functions touch and nothing else: no DDL, no
# deletes, no schema history, no other database's objects"), docs/database.md's "The
# application role" ("it may read and write processes, notifications and the request
# log and read the property table, and nothing else") and docs/design.md ("DML on these
# tables only").
# Written out here, not read from the migrations: a grant added there must fail this.
DOCUMENTED_TABLE_PRIVILEGES = {
    *(
        (table, privilege)
        for table in ("notification", "process", "request_log")
        for privilege in ("SELECT", "INSERT", "UPDATE")
    ),
    ("property", "SELECT"),
}
TABLE_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]


def test_the_application_roles_privileges_are_exactly_the_documented_ones(
    empty_database_url: str,
) -> None:
    # GIVEN a database the migrations made (not a copy: a copy starts from PostgreSQL's
    # database-level defaults), read as its owner from PostgreSQL's catalog: each
    # privilege as the role holds it, directly, through PUBLIC or a role it is member of,
    # on Escalator's own objects (outside pg_* and information_schema)
    dsn = empty_database_url
    migrate(dsn, default_sql_dir())
    role = APPLICATION_ROLE

    # THEN on every table, view and sequence it holds what is documented
    holds = query(
        dsn,
        """
        SELECT c.relname, p.privilege
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN unnest(%s::text[]) AS p(privilege)
        WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND has_table_privilege(%s, c.oid, p.privilege)
        """,
        (TABLE_PRIVILEGES, role),
    )
    assert set(holds) == DOCUMENTED_TABLE_PRIVILEGES
    # AND nothing on a column of its own, a sequence or a function
    columns = query(
        dsn,
        """
        SELECT c.relname, a.attname
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
          AND a.attacl IS NOT NULL
        """,
    )
    assert columns == []
    sequences = query(
        dsn,
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND c.relkind = 'S'
          AND (has_sequence_privilege(%s, c.oid, 'USAGE')
               OR has_sequence_privilege(%s, c.oid, 'UPDATE'))
        """,
        (role, role),
    )
    assert sequences == []
    functions = query(
        dsn,
        """
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
          AND has_function_privilege(%s, p.oid, 'EXECUTE')
        """,
        (role,),
    )
    assert functions == []
    # AND no default privileges hand it (or anyone) what later objects would get
    assert query(dsn, "SELECT defaclrole::regrole::text FROM pg_default_acl") == []
    # AND in no schema, nor in the database, may it create anything (no DDL, no
    # temporary tables); it may connect, and use the schema its tables are in
    schemas = query(
        dsn,
        """
        SELECT n.nspname, has_schema_privilege(%s, n.oid, 'USAGE'),
               has_schema_privilege(%s, n.oid, 'CREATE')
        FROM pg_namespace n
        WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
        """,
        (role, role),
    )
    assert schemas == [("public", True, False)]
    database = query(
        dsn,
        """
        SELECT has_database_privilege(%s, current_database(), 'CONNECT'),
               has_database_privilege(%s, current_database(), 'CREATE'),
               has_database_privilege(%s, current_database(), 'TEMPORARY')
        """,
        (role, role, role),
    )
    assert database == [(True, False, False)]
    # AND it is a member of no role but rds_iam (on RDS: IAM authentication), with no
    # attribute beyond logging in
    memberships = query(
        dsn, "SELECT roleid::regrole::text FROM pg_auth_members WHERE member = %s::regrole", (role,)
    )
    rds = query(dsn, "SELECT rolname FROM pg_roles WHERE rolname = 'rds_iam'")
    assert set(memberships) == set(rds)
    attributes = query(
        dsn,
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
        " FROM pg_roles WHERE rolname = %s",
        (role,),
    )
    assert attributes == [(True, False, False, False, False, False)]
