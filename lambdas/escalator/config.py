"""Configuration: the one place that reads the environment.

Each entry point loads its frozen settings once, at cold start, and fails fast with a
``ConfigError`` naming the missing or malformed variable. Variable names follow the
original roesc where it had them (``DB_HOST``, ``DB_PORT``, ``DB_NAME``, ``DB_USER``,
``DB_PASSWORD``); ``DATABASE_URL`` may replace the ``DB_*`` group. ``Env`` lists every
name, and ``infra/`` sets them by these constants. Each provider's settings live next
to its adapter (``escalator.channels``) and are read with the helpers below.

A leaf: it imports nothing of Escalator's but its errors and limits. Every default is
stated once, on the settings dataclass; a loader passes on only what is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg2.extensions import make_dsn, parse_dsn

from escalator.errors import ConfigError
from escalator.limits import (
    MAX_LATENESS_SECONDS,
    MAX_SCHEDULE_AHEAD_SECONDS,
    RECIPIENT_GUARD_SECONDS,
    claim_lookahead,
    expiry_seconds,
)


class Env:
    """The environment variables the database functions and the CLI read."""

    DATABASE_URL = "DATABASE_URL"
    DB_SECRET_ARN = "DB_SECRET_ARN"  # noqa: S105 - names, not values
    DB_HOST = "DB_HOST"
    DB_PORT = "DB_PORT"
    DB_NAME = "DB_NAME"
    DB_USER = "DB_USER"
    DB_PASSWORD = "DB_PASSWORD"  # noqa: S105
    DB_SSLMODE = "DB_SSLMODE"
    # the root certificates the server's certificate must chain to (a PEM file)
    DB_SSLROOTCERT = "DB_SSLROOTCERT"
    DB_CONNECT_TIMEOUT = "DB_CONNECT_TIMEOUT"
    DB_IDLE_CHECK_SECONDS = "DB_IDLE_CHECK_SECONDS"
    # true: the password is an IAM authentication token, signed at each connection
    DB_IAM_AUTH = "DB_IAM_AUTH"
    # Lambda's own: the region tokens are signed for
    AWS_REGION = "AWS_REGION"
    MAX_SCHEDULE_AHEAD_SECONDS = "MAX_SCHEDULE_AHEAD_SECONDS"
    LOOKAHEAD_SECONDS = "LOOKAHEAD_SECONDS"
    CLAIM_BATCH_SIZE = "CLAIM_BATCH_SIZE"
    MAX_LATENESS_SECONDS = "MAX_LATENESS_SECONDS"
    CLAIM_GRACE_SECONDS = "CLAIM_GRACE_SECONDS"
    SENDING_LEASE_SECONDS = "SENDING_LEASE_SECONDS"
    CONFIRM_MAX_WAIT_SECONDS = "CONFIRM_MAX_WAIT_SECONDS"
    RECIPIENT_GUARD_SECONDS = "RECIPIENT_GUARD_SECONDS"
    CALLER_ID_REGISTRY = "CALLER_ID_REGISTRY"
    # the purge: how many days finished processes and the request log are kept
    RETENTION_DAYS = "RETENTION_DAYS"
    # the launcher: the in-VPC migration function it hands the master credentials to
    MIGRATION_FUNCTION = "MIGRATION_FUNCTION"
    # ... and that function's timeout: how long the launcher waits for its answer
    MIGRATION_TIMEOUT_SECONDS = "MIGRATION_TIMEOUT_SECONDS"
    # the status-callback receiver: the in-VPC function that records a call's status
    CALL_STATUS_FUNCTION = "CALL_STATUS_FUNCTION"
    # the initiator: the delivery window (Express state machine) it starts for
    # notifications that arrive near their due time
    DELIVERY_WINDOW_ARN = "DELIVERY_WINDOW_ARN"
    # botocore's own: reach AWS APIs at their dual-stack (IPv6) endpoints
    AWS_USE_DUALSTACK_ENDPOINT = "AWS_USE_DUALSTACK_ENDPOINT"
    # Powertools' own: the ``service`` key of every log line and metric.
    POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"


# What a secret holds until the operator puts the real credentials there.
PLACEHOLDER = "set-me"
# The database's port when neither the URL nor ``DB_PORT`` names one.
POSTGRES_PORT = 5432
# How the ``DB_*`` settings (the functions on AWS) connect unless ``DB_SSLMODE`` says
# otherwise: TLS, with a server certificate that chains to a root certificate of
# ``DB_SSLROOTCERT`` and names the host connected to (libpq's ``verify-full``).
DB_SSLMODE_DEFAULT = "verify-full"
# The sslmodes that check the server's certificate against root certificates.
VERIFYING_SSLMODES = ("verify-ca", "verify-full")
# AWS's RDS CA bundle, shipped in the package: the root certificates when
# ``DB_SSLROOTCERT`` names none (where it comes from: docs/database-tls.md).
RDS_CA_BUNDLE_FILE = "certs/rds-global-bundle.pem"  # in the package
RDS_CA_BUNDLE = Path(__file__).resolve().parent / RDS_CA_BUNDLE_FILE


Password = Callable[[], str]


@dataclass(frozen=True)
class DatabaseSettings:
    """How to reach PostgreSQL: a DSN without the password, and what gives the password
    at each new connection (an IAM token signed then, or a fixed password). Neither
    appears in repr."""

    dsn: str = field(repr=False)
    # A connection idle for longer than this is checked before it is used again, so a
    # connection the server dropped while the Lambda sandbox was frozen fails nothing.
    idle_check_seconds: int = 30
    password: Password | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DatabaseSettings:
        """Settings from a URL or DSN; a password in it becomes the fixed password."""
        parts = parse_dsn(url)
        secret = parts.pop("password", None)
        return cls(dsn=make_dsn(**parts), password=_fixed(secret) if secret else None, **options)


def _fixed(password: str) -> Password:
    return lambda: password


def iam_token_signer(host: str, port: int, user: str, region: str) -> Password:
    """A fresh IAM authentication token for ``user`` at each call: signed locally with
    the function's credentials (no network call), valid for 15 minutes, checked only
    when a connection opens."""
    import boto3  # bundled, pinned (lambdas/requirements.txt)

    client = boto3.client("rds", region_name=region)
    return lambda: str(
        client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)
    )


@dataclass(frozen=True)
class InitiatorConfig:
    """Settings of the initiator Lambda."""

    database: DatabaseSettings
    max_schedule_ahead_seconds: int = MAX_SCHEDULE_AHEAD_SECONDS
    # A notification due longer ago than this at arrival is rejected, not stored pending.
    max_lateness_seconds: int = MAX_LATENESS_SECONDS
    # Where near-due arrivals are delivered at once; without it, the ticks deliver them.
    delivery_window_arn: str | None = None
    # How far ahead a tick claims (two schedule periods): what arrives due sooner than
    # that (and a margin) is claimed at ingest and delivered by a window of its own.
    lookahead_seconds: int = claim_lookahead(60)
    # An arrival's claim lapses this long after its due time if its window never ran.
    claim_grace_seconds: int = 300


@dataclass(frozen=True)
class DeliveryConfig:
    """Settings of the database steps of the state machine (claim, confirm, record)."""

    database: DatabaseSettings
    # Claim what falls due within this many seconds: two schedule periods (a tick may come
    # up to a period late).
    lookahead_seconds: int = claim_lookahead(60)
    # At most this many notifications per claim, so the state stays far below 256 KB.
    claim_batch_size: int = 200
    # The limit of lateness at ingest: a notification is expired past ``expire_after``.
    max_lateness_seconds: int = MAX_LATENESS_SECONDS
    # A claim not confirmed this long after its due time is returned to pending.
    claim_grace_seconds: int = 300
    # A notification sending this long without an outcome becomes unknown.
    sending_lease_seconds: int = 600
    # The Wait state before confirm resolves whole seconds; confirm waits out at most
    # this much of what is left, so nothing is delivered before its due time.
    confirm_max_wait_seconds: float = 5.0
    # The per-recipient guard: a delivery covers other processes' notifications to the
    # same channel and target falling due within this many seconds after it (0: off).
    recipient_guard_seconds: int = RECIPIENT_GUARD_SECONDS

    @property
    def expire_after(self) -> int:
        """How late a notification is when the housekeeping or the confirm step expires it
        instead of delivering it (``limits.expiry_seconds``)."""
        return expiry_seconds(self.max_lateness_seconds, self.lookahead_seconds)


@dataclass(frozen=True)
class MigrationConfig:
    """Settings of the migration function the stack runs at deploy time. On AWS it has
    no credentials of its own: ``database`` is ``None`` and the launcher hands it the
    master user's in the invocation; ``master_settings`` completes the connection."""

    database: DatabaseSettings | None
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    # JSON object of number prefixes to caller ids, stored as the caller-id-registry property.
    caller_id_registry: str | None = None

    def master_settings(self, username: str, password: str) -> DatabaseSettings:
        """The master connection, from the address in the environment."""
        values = {**self.environment, Env.DB_USER: username, Env.DB_PASSWORD: password}
        require(values, Env.DB_HOST, Env.DB_NAME)
        return DatabaseSettings(dsn=_dsn(self.environment, values), password=_fixed(password))


@dataclass(frozen=True)
class PurgeConfig:
    """Settings of the purge function: its database (as the purge's role) and how many
    days what has finished is kept."""

    database: DatabaseSettings
    retention_days: int


@dataclass(frozen=True)
class LauncherConfig:
    """Settings of the migration launcher: the master secret, and whom to hand it to."""

    secret_arn: str
    migration_function: str
    migration_timeout_seconds: int


def _environment(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def database_settings(
    environ: Mapping[str, str] | None = None, *, url: str | None = None
) -> DatabaseSettings:
    """``url`` if given, else ``DATABASE_URL``, else the ``DB_*`` variables, with the
    credentials (and host, port, name) from the RDS secret ``DB_SECRET_ARN`` when set."""
    env = _environment(environ)
    url = url or env.get(Env.DATABASE_URL)
    idle = present(idle_check_seconds=integer(env, Env.DB_IDLE_CHECK_SECONDS, minimum=0))
    if url:
        return DatabaseSettings.from_url(url, **idle)
    if boolean(env, Env.DB_IAM_AUTH):
        return _iam_settings(env, idle)
    values = with_secret(
        env,
        Env.DB_SECRET_ARN,
        {
            Env.DB_HOST: "host",
            Env.DB_PORT: "port",
            Env.DB_NAME: "dbname",
            Env.DB_USER: "username",
            Env.DB_PASSWORD: "password",
        },
    )
    missing = [
        name
        for name in (Env.DB_HOST, Env.DB_NAME, Env.DB_USER, Env.DB_PASSWORD)
        if not values.get(name)
    ]
    if missing:
        raise ConfigError(
            f"missing required environment variable {', '.join(missing)} (set DATABASE_URL, "
            "DB_SECRET_ARN, or all of DB_HOST, DB_NAME, DB_USER and DB_PASSWORD)"
        )
    dsn = _dsn(env, values)
    return DatabaseSettings(dsn=dsn, password=_fixed(values[Env.DB_PASSWORD]), **idle)


def _dsn(env: Mapping[str, str], values: Mapping[str, str]) -> str:
    return make_dsn(
        host=values[Env.DB_HOST],
        port=integer(values, Env.DB_PORT) or POSTGRES_PORT,
        dbname=values[Env.DB_NAME],
        user=values[Env.DB_USER],
        connect_timeout=integer(env, Env.DB_CONNECT_TIMEOUT) or 5,
        application_name="escalator",
        **_tls(env),
    )


def _tls(env: Mapping[str, str]) -> dict[str, str]:
    """``sslmode`` and, for a mode that verifies the server, ``sslrootcert``: a file
    that exists (else ``ConfigError`` now, not a TLS failure at each connection)."""
    sslmode = env.get(Env.DB_SSLMODE) or DB_SSLMODE_DEFAULT
    named_root = env.get(Env.DB_SSLROOTCERT) or None
    if sslmode not in VERIFYING_SSLMODES:
        return {"sslmode": sslmode, **({"sslrootcert": named_root} if named_root else {})}
    root = named_root or str(RDS_CA_BUNDLE)
    if not Path(root).is_file():
        named = f"{Env.DB_SSLROOTCERT} names {root}, which" if named_root else f"the bundled {root}"
        raise ConfigError(
            f"sslmode={sslmode} verifies the database server's certificate against root "
            f"certificates, but {named} is not a file"
        )
    return {"sslmode": sslmode, "sslrootcert": root}


def _iam_settings(env: Mapping[str, str], idle: dict[str, Any]) -> DatabaseSettings:
    require(env, Env.DB_HOST, Env.DB_NAME, Env.DB_USER, Env.AWS_REGION)
    port = integer(env, Env.DB_PORT) or POSTGRES_PORT
    signer = iam_token_signer(env[Env.DB_HOST], port, env[Env.DB_USER], env[Env.AWS_REGION])
    return DatabaseSettings(dsn=_dsn(env, env), password=signer, **idle)


def load_initiator_config(environ: Mapping[str, str] | None = None) -> InitiatorConfig:
    """Read the initiator's settings; raise ``ConfigError`` naming what is missing."""
    env = _environment(environ)
    return InitiatorConfig(
        database=database_settings(env),
        **present(
            max_schedule_ahead_seconds=integer(env, Env.MAX_SCHEDULE_AHEAD_SECONDS),
            max_lateness_seconds=integer(env, Env.MAX_LATENESS_SECONDS),
            delivery_window_arn=env.get(Env.DELIVERY_WINDOW_ARN) or None,
            lookahead_seconds=integer(env, Env.LOOKAHEAD_SECONDS),
            claim_grace_seconds=integer(env, Env.CLAIM_GRACE_SECONDS),
        ),
    )


def initiator_lookahead(variables: Mapping[str, str]) -> int:
    """The lookahead an initiator with these environment variables runs with (what
    ``escalator verify`` reads of a deployed initiator's configuration)."""
    return integer(variables, Env.LOOKAHEAD_SECONDS) or InitiatorConfig.lookahead_seconds


def load_delivery_config(environ: Mapping[str, str] | None = None) -> DeliveryConfig:
    """Read the settings of the activator, confirm and record functions."""
    env = _environment(environ)
    return DeliveryConfig(
        database=database_settings(env),
        **present(
            lookahead_seconds=integer(env, Env.LOOKAHEAD_SECONDS),
            claim_batch_size=integer(env, Env.CLAIM_BATCH_SIZE),
            max_lateness_seconds=integer(env, Env.MAX_LATENESS_SECONDS),
            claim_grace_seconds=integer(env, Env.CLAIM_GRACE_SECONDS),
            sending_lease_seconds=integer(env, Env.SENDING_LEASE_SECONDS),
            confirm_max_wait_seconds=number(env, Env.CONFIRM_MAX_WAIT_SECONDS),
            recipient_guard_seconds=integer(env, Env.RECIPIENT_GUARD_SECONDS, minimum=0),
        ),
    )


def load_migration_config(environ: Mapping[str, str] | None = None) -> MigrationConfig:
    """Read the migration function's settings; a registry must be a JSON object of strings."""
    env = _environment(environ)
    registry = env.get(Env.CALLER_ID_REGISTRY) or None
    if registry is not None:
        try:
            parsed = json.loads(registry)
        except json.JSONDecodeError:
            raise ConfigError(f"{Env.CALLER_ID_REGISTRY} is not valid JSON") from None
        if not isinstance(parsed, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in parsed.items()
        ):
            raise ConfigError(
                f"{Env.CALLER_ID_REGISTRY} must be a JSON object of prefix to caller id"
            )
    has_credentials = any(
        env.get(name) for name in (Env.DATABASE_URL, Env.DB_SECRET_ARN, Env.DB_PASSWORD)
    )
    return MigrationConfig(
        database=database_settings(env) if has_credentials else None,
        environment=dict(env),
        caller_id_registry=registry,
    )


def load_purge_config(environ: Mapping[str, str] | None = None) -> PurgeConfig:
    """Read the purge function's settings; ``RETENTION_DAYS`` is required (the stack sets
    it): a purge never guesses how much to delete."""
    env = _environment(environ)
    require(env, Env.RETENTION_DAYS)
    days = integer(env, Env.RETENTION_DAYS)
    assert days is not None
    return PurgeConfig(database=database_settings(env), retention_days=days)


def load_launcher_config(environ: Mapping[str, str] | None = None) -> LauncherConfig:
    """Read the migration launcher's settings."""
    env = _environment(environ)
    require(env, Env.DB_SECRET_ARN, Env.MIGRATION_FUNCTION, Env.MIGRATION_TIMEOUT_SECONDS)
    timeout = integer(env, Env.MIGRATION_TIMEOUT_SECONDS)
    assert timeout is not None  # required above
    return LauncherConfig(
        secret_arn=env[Env.DB_SECRET_ARN],
        migration_function=env[Env.MIGRATION_FUNCTION],
        migration_timeout_seconds=timeout,
    )


@dataclass(frozen=True)
class CallbackConfig:
    """Settings of the status-callback receiver (outside the VPC)."""

    recorder_function: str


def load_callback_config(environ: Mapping[str, str] | None = None) -> CallbackConfig:
    """Read the status-callback receiver's settings."""
    env = _environment(environ)
    require(env, Env.CALL_STATUS_FUNCTION)
    return CallbackConfig(recorder_function=env[Env.CALL_STATUS_FUNCTION])


# The helpers the loaders here and the providers' loaders share.


def present(**values: Any) -> dict[str, Any]:
    """The values that are set: what a loader passes on, so the dataclass default holds
    for everything else."""
    return {name: value for name, value in values.items() if value is not None}


def integer(env: Mapping[str, str], name: str, *, minimum: int = 1) -> int | None:
    """The integer in ``name``, ``None`` when unset; ``ConfigError`` when malformed."""
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name} must be at least {minimum}, got {value}")
    return value


def number(env: Mapping[str, str], name: str) -> float | None:
    """The non-negative number in ``name``, ``None`` when unset."""
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"environment variable {name} must be at least 0, got {raw}")
    return value


def boolean(env: Mapping[str, str], name: str) -> bool | None:
    """``true``/``false`` (or 1/0, yes/no, on/off) in ``name``, ``None`` when unset."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"environment variable {name} must be true or false, got {raw!r}")


def require(env: Mapping[str, str], *names: str) -> None:
    """Raise ``ConfigError`` naming every one of ``names`` that is unset."""
    missing = [name for name in names if not env.get(name)]
    if missing:
        raise ConfigError(f"missing required environment variable {', '.join(missing)}")


def with_secret(env: Mapping[str, str], arn_name: str, fields: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus the values of the secret named by ``arn_name``: ``fields`` maps
    environment variable names to keys of the secret's JSON object."""
    values = dict(env)
    if env.get(arn_name):
        secret = read_secret(env[arn_name])
        values |= {name: str(secret[key]) for name, key in fields.items() if key in secret}
    return values


def read_secret(arn: str) -> dict[str, Any]:
    """The JSON object stored in a Secrets Manager secret (read once, at cold start)."""
    import boto3  # bundled, pinned (lambdas/requirements.txt)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        text = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        value = json.loads(text)
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(f"cannot read secret {arn}: {exc}") from None
    except json.JSONDecodeError:
        raise ConfigError(f"secret {arn} does not hold a JSON object") from None
    if not isinstance(value, dict):
        raise ConfigError(f"secret {arn} does not hold a JSON object")
    if PLACEHOLDER in value.values():
        unset = sorted(key for key, item in value.items() if item == PLACEHOLDER)
        raise ConfigError(
            f"secret {arn} still holds the placeholder for {', '.join(unset)}: "
            "put the real credentials there (see docs/deploy.md, 'Provider credentials')"
        )
    return value
