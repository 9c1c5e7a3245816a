"""Configuration fails fast, naming what is missing."""

from __future__ import annotations

import pytest
from psycopg2.extensions import parse_dsn

from escalator.config import database_settings, load_initiator_config
from escalator.errors import ConfigError


def test_database_url_wins() -> None:
    settings = database_settings({"DATABASE_URL": "postgresql://u:p@db/escalator", "DB_HOST": "x"})
    assert settings.dsn == "postgresql://u:p@db/escalator"


def test_db_variables_of_the_original_build_a_dsn() -> None:
    env = {
        "DB_HOST": "db",
        "DB_PORT": "6432",
        "DB_NAME": "esc",
        "DB_USER": "u",
        "DB_PASSWORD": "pw",
    }
    parsed = parse_dsn(database_settings(env).dsn)
    assert parsed["host"] == "db"
    assert parsed["port"] == "6432"
    assert parsed["dbname"] == "esc"
    assert parsed["password"] == "pw"
    assert parsed["sslmode"] == "prefer"


def test_missing_values_are_named() -> None:
    with pytest.raises(ConfigError, match="DB_NAME, DB_PASSWORD"):
        load_initiator_config({"DB_HOST": "db", "DB_USER": "u"})


def test_malformed_integer_is_named() -> None:
    env = {"DATABASE_URL": "postgresql:///x", "MAX_SCHEDULE_AHEAD_SECONDS": "soon"}
    with pytest.raises(ConfigError, match="MAX_SCHEDULE_AHEAD_SECONDS must be an integer"):
        load_initiator_config(env)


def test_password_is_not_in_repr() -> None:
    settings = database_settings({"DATABASE_URL": "postgresql://u:secret@db/x"})
    assert "secret" not in repr(settings)
