"""The migration runner: in order, once, concurrently safe, and loud when a file fails."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devstack.peers.postgres import query
from escalator.migrations import MigrationError, default_sql_dir, discover, migrate

SQL_DIR = default_sql_dir()


def tables(dsn: str) -> set[str]:
    rows = query(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row[0] for row in rows}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_schema_applies_to_an_empty_database_and_is_a_no_op_the_second_time(
    empty_database_url: str,
) -> None:
    lines: list[str] = []

    applied = migrate(empty_database_url, SQL_DIR, progress=lines.append)

    assert [migration.filename for migration in applied] == [
        migration.filename for migration in discover(SQL_DIR)
    ]
    assert {"process", "notification", "property", "request_log", "schema_migration"} <= tables(
        empty_database_url
    )
    assert any("applied 0001_initial.sql" in line for line in lines)
    recorded = query(
        empty_database_url, "SELECT version, filename FROM schema_migration ORDER BY 1"
    )
    assert recorded == [(m.version, m.filename) for m in discover(SQL_DIR)]

    lines.clear()
    assert migrate(empty_database_url, SQL_DIR, progress=lines.append) == []
    assert lines == [f"database is up to date ({len(recorded)} migrations applied)"]
    assert query(empty_database_url, "SELECT count(*) FROM schema_migration") == [(len(recorded),)]


def test_migrations_apply_in_version_order(empty_database_url: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path / "sql",
        {
            "0002_add_column.sql": "ALTER TABLE t ADD COLUMN b int;",
            "0010_fill.sql": "INSERT INTO t (a, b) VALUES (1, 2);",
            "0001_create.sql": "CREATE TABLE t (a int);",
        },
    )

    applied = migrate(empty_database_url, directory)

    assert [migration.version for migration in applied] == [1, 2, 10]
    assert query(empty_database_url, "SELECT a, b FROM t") == [(1, 2)]


def test_concurrent_runners_apply_each_migration_once(empty_database_url: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(len(migrate(empty_database_url, SQL_DIR)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    runners = [threading.Thread(target=run) for _ in range(4)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=60)

    assert errors == []
    every_file = len(discover(SQL_DIR))
    assert sorted(results) == [0, 0, 0, every_file]
    assert query(empty_database_url, "SELECT count(*) FROM schema_migration") == [(every_file,)]


def test_failing_migration_stops_with_a_clear_message_and_keeps_the_good_ones(
    empty_database_url: str, tmp_path: Path
) -> None:
    directory = write(
        tmp_path / "sql",
        {
            "0001_create.sql": "CREATE TABLE t (a int);",
            "0002_broken.sql": "CREATE TABLE u (a int); ALTER TABLE missing ADD COLUMN b int;",
            "0003_never.sql": "CREATE TABLE v (a int);",
        },
    )

    with pytest.raises(MigrationError) as failure:
        migrate(empty_database_url, directory)

    message = str(failure.value)
    assert message.startswith("migration 0002_broken.sql failed and was rolled back:")
    assert 'relation "missing" does not exist' in message
    assert "t" in tables(empty_database_url)
    assert {"u", "v"}.isdisjoint(tables(empty_database_url))
    assert query(empty_database_url, "SELECT version FROM schema_migration") == [(1,)]


def test_an_applied_migration_that_was_edited_is_refused(
    empty_database_url: str, tmp_path: Path
) -> None:
    directory = write(tmp_path / "sql", {"0001_create.sql": "CREATE TABLE t (a int);"})
    migrate(empty_database_url, directory)
    write(directory, {"0001_create.sql": "CREATE TABLE t (a bigint);"})

    with pytest.raises(MigrationError, match=r"0001_create\.sql was changed after it was applied"):
        migrate(empty_database_url, directory)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"1_create.sql": ""}, "1_create.sql: migration files are named NNNN_lowercase_name.sql"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "0001_b.sql: version 1 is also 0001_a.sql"),
    ],
)
def test_badly_named_migrations_are_refused(
    files: dict[str, str], problem: str, tmp_path: Path
) -> None:
    with pytest.raises(MigrationError) as failure:
        discover(write(tmp_path / "sql", files))
    assert str(failure.value) == problem


def test_command_line_migrates_and_reports(empty_database_url: str) -> None:
    command = [sys.executable, "-m", "escalator_cli", "db", "migrate"]

    first = subprocess.run(
        [*command, "--database-url", empty_database_url],
        capture_output=True,
        text=True,
        check=False,
    )
    second = subprocess.run(
        [*command, "--database-url", empty_database_url],
        capture_output=True,
        text=True,
        check=False,
    )

    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stderr
    assert first.stdout.strip() == f"applied {len(discover(SQL_DIR))} migration(s)"
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "applied 0 migration(s)"


def test_command_line_fails_clearly_without_a_database(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "escalator_cli", "db", "migrate"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("escalator: error: missing required environment variable")
    assert "DB_HOST" in result.stderr
