"""Migrations only add (expand, never contract), so the code of the previous release,
which keeps running while a deploy migrates and then updates the functions
(infra/functions.py), works against the newer schema.

Contracting takes two releases: one that stops using what goes, then one that removes
it, listed in ``CONTRACTIONS`` with the release that stopped using it. A new constraint
must admit everything the previous release writes: that is for the review to judge.
"""

from __future__ import annotations

import re

import pytest

from escalator.migrations import APPLICATION_ROLE, Migration, default_sql_dir, discover

# Migration file -> why removing something there is safe (the release that stopped using it).
CONTRACTIONS: dict[str, str] = {}

# What old code cannot live with: each pattern, over the statement text in upper case.
FORBIDDEN = {
    "drops a table, view, column, type, function or schema": (
        r"\bDROP\s+(TABLE|VIEW|MATERIALIZED\s+VIEW|COLUMN|TYPE|FUNCTION|SCHEMA)\b"
    ),
    "renames something": r"\bRENAME\b",
    "changes a column's type": r"\bALTER\s+(COLUMN\s+)?\S+\s+(SET\s+DATA\s+)?TYPE\b",
    "makes an existing column NOT NULL": r"\bSET\s+NOT\s+NULL\b",
    "drops a default old code relies on": r"\bDROP\s+DEFAULT\b",
    "revokes the application role's rights": (
        rf"\bREVOKE\b[^;]*\bFROM\s+{APPLICATION_ROLE.upper()}\b"
    ),
}


def statements(sql: str) -> str:
    """The SQL without comments, its whitespace collapsed, in upper case."""
    without = re.sub(r"/\*.*?\*/", " ", re.sub(r"--[^\n]*", " ", sql), flags=re.DOTALL)
    return " ".join(without.split()).upper()


def added_columns(text: str) -> list[str]:
    """Each ``ADD COLUMN`` clause, up to the comma or semicolon that ends it."""
    clauses = []
    for match in re.finditer(r"\bADD\s+COLUMN\b", text):
        depth, end = 0, match.end()
        while end < len(text) and not (depth == 0 and text[end] in ",;"):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        clauses.append(text[match.start() : end])
    return clauses


def contractions(sql: str) -> list[str]:
    """What in ``sql`` would break code written for the schema before it."""
    text = statements(sql)
    found = [reason for reason, pattern in FORBIDDEN.items() if re.search(pattern, text)]
    found += [
        f"adds a NOT NULL column without a default: {clause}"
        for clause in added_columns(text)
        if "NOT NULL" in clause and not re.search(r"\b(DEFAULT|GENERATED)\b", clause)
    ]
    return found


@pytest.mark.parametrize("migration", discover(default_sql_dir()), ids=lambda m: m.filename)
def test_every_migration_only_adds(migration: Migration) -> None:
    if migration.filename in CONTRACTIONS:
        return
    assert contractions(migration.sql) == []


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE notification DROP COLUMN error;",
        "DROP TABLE request_log;",
        "ALTER TABLE process RENAME TO escalation;",
        "ALTER TABLE notification RENAME COLUMN error TO reason;",
        "ALTER TABLE notification ALTER COLUMN attempts TYPE bigint;",
        "ALTER TABLE notification ALTER attempts SET DATA TYPE bigint;",
        "ALTER TABLE notification ALTER COLUMN error SET NOT NULL;",
        "ALTER TABLE notification ALTER COLUMN attempts DROP DEFAULT;",
        "REVOKE UPDATE ON notification FROM escalator_app;",
        "ALTER TABLE notification ADD COLUMN lane text NOT NULL;",
        "ALTER TABLE notification ADD COLUMN a text, ADD COLUMN b int NOT NULL CHECK (b > 0);",
    ],
)
def test_what_breaks_old_code_is_found(sql: str) -> None:
    assert contractions(sql) != []


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE notification ADD COLUMN lane text;",
        "ALTER TABLE notification ADD COLUMN n integer NOT NULL DEFAULT 0 CHECK (n >= 0);",
        "CREATE TABLE lane (id bigint NOT NULL PRIMARY KEY);",
        "CREATE INDEX lane_by_id ON notification (id);",
        "ALTER TABLE notification DROP CONSTRAINT notification_state_known;",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
        "-- DROP TABLE process in a comment\nSELECT 1;",
    ],
)
def test_what_only_adds_passes(sql: str) -> None:
    assert contractions(sql) == []
