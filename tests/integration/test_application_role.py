"""The application role the functions connect as: the rows the pipeline touches, and
nothing else. (Every pipeline and initiator test connects as it too.)"""

from __future__ import annotations

import psycopg2
import pytest

from devstack.postgres import query
from escalator.migrations import APPLICATION_ROLE

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
