"""The tests' databases: each test gets an empty, migrated database of its own; given
back, a database is emptied for the next test, or dropped when its schema changed."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from devstack.peers.postgres import (
    PRISTINE_CLUSTER_VARIABLE,
    PostgresServer,
    embedded_postgres,
    from_pristine_cluster,
    query,
)

ROWS = """
    INSERT INTO process (process_id) VALUES ('restaurant-42');
    INSERT INTO notification (process_ref, position, channel, target, due_at)
        SELECT id, 0, 'phone', '+385911234567', now() FROM process;
    INSERT INTO request_log (message_id, process_id, action, outcome)
        VALUES ('m-1', 'restaurant-42', 'start', 'started');
    INSERT INTO property (property_key, property_value) VALUES ('caller-id-registry', '{}');
"""


def counts(dsn: str) -> list[int]:
    ((process, notification, request_log, prop),) = query(
        dsn,
        "SELECT (SELECT count(*) FROM process), (SELECT count(*) FROM notification),"
        " (SELECT count(*) FROM request_log), (SELECT count(*) FROM property)",
    )
    return [process, notification, request_log, prop]


def test_a_database_given_back_comes_to_the_next_test_empty_and_unused(
    postgres: PostgresServer,
) -> None:
    # GIVEN a test wrote to every table and left a session open, in a transaction
    with postgres.scratch_database() as name:
        dsn = postgres.dsn(name)
        query(dsn, ROWS)
        assert counts(dsn) == [1, 1, 1, 1]
        left_open = psycopg2.connect(dsn)
        left_open.cursor().execute("SELECT * FROM process FOR UPDATE")
        left_open_pid = left_open.get_backend_pid()

    # WHEN the next test takes a database
    with postgres.scratch_database() as again:
        dsn = postgres.dsn(again)

        # THEN it is that one, empty, its ids starting again, with no session of the
        # test before it
        assert again == name
        assert counts(dsn) == [0, 0, 0, 0]
        assert query(dsn, "INSERT INTO process (process_id) VALUES ('x') RETURNING id") == [(1,)]
        assert query(
            dsn,
            "INSERT INTO notification (process_ref, position, channel, target, due_at)"
            " VALUES (1, 0, 'console', 'x', now()) RETURNING id",
        ) == [(1,)]
        # (and no row of the test before it left behind, dead or alive)
        assert query(dsn, "SELECT pg_relation_size('request_log')") == [(0,)]
        # (by its process: a session this test's own query just closed may linger in
        # pg_stat_activity for a moment, as may an autovacuum worker)
        assert query(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
            (left_open_pid,),
        ) == [(0,)]
    # ... and the session left open was ended
    with pytest.raises(psycopg2.OperationalError):
        left_open.cursor().execute("SELECT 1")
    left_open.close()


@pytest.mark.parametrize(
    "change",
    [
        "CREATE FUNCTION stray() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER TABLE process ALTER COLUMN state SET DEFAULT 'stopped'",
        "CREATE INDEX stray ON notification (target)",
        "REVOKE SELECT ON property FROM escalator_app",
        "DELETE FROM schema_migration WHERE version = 9",
        "CREATE TABLE stray (id int)",
        # (a storage parameter of a table, as sql/0012_notification_autovacuum.sql sets)
        "ALTER TABLE notification SET (fillfactor = 90)",
    ],
)
def test_a_database_whose_schema_a_test_changed_is_never_given_again(
    postgres: PostgresServer, change: str
) -> None:
    # GIVEN a test changed its database's schema
    with postgres.scratch_database() as name:
        query(postgres.dsn(name), change)

    # WHEN the next test takes a database
    with postgres.scratch_database() as again:
        # THEN it is another one
        assert again != name


def test_a_new_embedded_server_is_a_copy_of_the_pristine_cluster_and_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a session's pristine cluster (made by the first server that needs it)
    monkeypatch.setenv(PRISTINE_CLUSTER_VARIABLE, str(tmp_path / "pristine"))
    with embedded_postgres(tmp_path / "first") as first:
        query(first, "CREATE TABLE only_in_the_first (id int)")

        # WHEN another server starts in an empty directory, beside the first
        copied = from_pristine_cluster(tmp_path / "second")
        with embedded_postgres(tmp_path / "second") as second:
            # THEN it was copied, not initialized, and serves a cluster of its own
            assert copied
            assert query(second, "SELECT 1") == [(1,)]
            assert query(second, "SELECT to_regclass('only_in_the_first') IS NULL") == [(True,)]
            assert second != first
            # AND, thrown away with the session, it flushes nothing to disk, while each
            # commit still writes its WAL before it returns (a killed server loses none)
            settings = "SELECT current_setting('fsync'), current_setting('full_page_writes'),"
            assert query(second, settings + " current_setting('synchronous_commit')") == [
                ("off", "off", "on")
            ]
    # (a directory already initialized is left as it is)
    assert not from_pristine_cluster(tmp_path / "second")
