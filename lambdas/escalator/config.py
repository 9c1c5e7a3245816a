"""Configuration: the one place that reads the environment.

Each entry point loads its frozen settings once, at cold start, and fails fast with a
message naming the missing or malformed variable. Variable names follow the original
roesc where it had them (``DB_HOST``, ``DB_PORT``, ``DB_NAME``, ``DB_USER``,
``DB_PASSWORD``, ``REQUEST_QUEUE``); ``DATABASE_URL`` may replace the ``DB_*`` group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg2.extensions import make_dsn

from escalator.contract import MAX_SCHEDULE_AHEAD_SECONDS


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class DatabaseSettings:
    """How to reach PostgreSQL. The DSN holds the password, so it is kept out of repr."""

    dsn: str = field(repr=False)
    # A connection idle for longer than this is checked before it is used again, so a
    # connection the server dropped while the Lambda sandbox was frozen fails nothing.
    idle_check_seconds: int = 30


@dataclass(frozen=True)
class InitiatorConfig:
    """Settings of the initiator Lambda."""

    database: DatabaseSettings
    max_schedule_ahead_seconds: int = MAX_SCHEDULE_AHEAD_SECONDS


def database_settings(
    environ: Mapping[str, str] | None = None, *, url: str | None = None
) -> DatabaseSettings:
    """``url`` if given, else ``DATABASE_URL``, else the ``DB_*`` variables."""
    env = os.environ if environ is None else environ
    url = url or env.get("DATABASE_URL")
    idle_check = _integer(env, "DB_IDLE_CHECK_SECONDS", 30, minimum=0)
    if url:
        return DatabaseSettings(dsn=url, idle_check_seconds=idle_check)
    missing = [
        name for name in ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD") if not env.get(name)
    ]
    if missing:
        raise ConfigError(
            f"missing required environment variable {', '.join(missing)} "
            "(set DATABASE_URL, or all of DB_HOST, DB_NAME, DB_USER and DB_PASSWORD)"
        )
    dsn = make_dsn(
        host=env["DB_HOST"],
        port=_integer(env, "DB_PORT", 5432),
        dbname=env["DB_NAME"],
        user=env["DB_USER"],
        password=env["DB_PASSWORD"],
        sslmode=env.get("DB_SSLMODE", "prefer"),
        connect_timeout=_integer(env, "DB_CONNECT_TIMEOUT", 5),
        application_name="escalator",
    )
    return DatabaseSettings(dsn=dsn, idle_check_seconds=idle_check)


def load_initiator_config(environ: Mapping[str, str] | None = None) -> InitiatorConfig:
    """Read the initiator's settings; raise ``ConfigError`` naming what is missing."""
    env = os.environ if environ is None else environ
    return InitiatorConfig(
        database=database_settings(env),
        max_schedule_ahead_seconds=_integer(
            env, "MAX_SCHEDULE_AHEAD_SECONDS", MAX_SCHEDULE_AHEAD_SECONDS
        ),
    )


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name} must be at least {minimum}, got {value}")
    return value
