"""The application role the functions connect as: the rows the pipeline touches, and
nothing else. (Every pipeline and initiator test connects as it too.)"""

from __future__ import annotations

from dataclasses import replace

import psycopg2
import pytest

from devstack.postgres import query
from escalator.config import DatabaseSettings
from escalator.database import Database
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
