"""Configuration: the one place that reads the environment.

Each entry point loads its frozen settings once, at cold start, and fails fast with a
message naming the missing or malformed variable. Variable names follow the original
roesc where it had them (``DB_HOST``, ``DB_PORT``, ``DB_NAME``, ``DB_USER``,
``DB_PASSWORD``, ``REQUEST_QUEUE``); ``DATABASE_URL`` may replace the ``DB_*`` group.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    """``url`` if given, else ``DATABASE_URL``, else the ``DB_*`` variables, with the
    credentials (and host, port, name) from the RDS secret ``DB_SECRET_ARN`` when set."""
    env = os.environ if environ is None else environ
    url = url or env.get("DATABASE_URL")
    idle_check = _integer(env, "DB_IDLE_CHECK_SECONDS", 30, minimum=0)
    if url:
        return DatabaseSettings(dsn=url, idle_check_seconds=idle_check)
    values = dict(env)
    if env.get("DB_SECRET_ARN"):
        secret = read_secret(env["DB_SECRET_ARN"])
        fields = {"DB_HOST": "host", "DB_PORT": "port", "DB_NAME": "dbname"}
        fields |= {"DB_USER": "username", "DB_PASSWORD": "password"}
        values |= {name: str(secret[key]) for name, key in fields.items() if key in secret}
    missing = [
        name for name in ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD") if not values.get(name)
    ]
    if missing:
        raise ConfigError(
            f"missing required environment variable {', '.join(missing)} (set DATABASE_URL, "
            "DB_SECRET_ARN, or all of DB_HOST, DB_NAME, DB_USER and DB_PASSWORD)"
        )
    dsn = make_dsn(
        host=values["DB_HOST"],
        port=_integer(values, "DB_PORT", 5432),
        dbname=values["DB_NAME"],
        user=values["DB_USER"],
        password=values["DB_PASSWORD"],
        sslmode=env.get("DB_SSLMODE", "prefer"),
        connect_timeout=_integer(env, "DB_CONNECT_TIMEOUT", 5),
        application_name="escalator",
    )
    return DatabaseSettings(dsn=dsn, idle_check_seconds=idle_check)


PLACEHOLDER = "set-me"


def read_secret(arn: str) -> dict[str, Any]:
    """The JSON object stored in a Secrets Manager secret (read once, at cold start)."""
    import boto3  # provided by the Lambda runtime
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
            "put the real credentials there (see README, 'Provider credentials')"
        )
    return value


def _with_secret(env: Mapping[str, str], arn_name: str, fields: dict[str, str]) -> dict[str, str]:
    """``env`` plus the values of the secret named by ``arn_name``: its ``fields`` map
    environment variable names to keys of the secret's JSON object."""
    values = dict(env)
    if env.get(arn_name):
        secret = read_secret(env[arn_name])
        values |= {name: str(secret[key]) for name, key in fields.items() if key in secret}
    return values


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


@dataclass(frozen=True)
class MigrationConfig:
    """Settings of the migration function the stack runs at deploy time."""

    database: DatabaseSettings
    # JSON object of number prefixes to caller ids, stored as the caller-id-registry property.
    caller_id_registry: str | None = None


def load_migration_config(environ: Mapping[str, str] | None = None) -> MigrationConfig:
    """Read the migration function's settings; a registry must be a JSON object of strings."""
    env = os.environ if environ is None else environ
    registry = env.get("CALLER_ID_REGISTRY") or None
    if registry is not None:
        try:
            parsed = json.loads(registry)
        except json.JSONDecodeError:
            raise ConfigError("CALLER_ID_REGISTRY is not valid JSON") from None
        if not isinstance(parsed, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in parsed.items()
        ):
            raise ConfigError("CALLER_ID_REGISTRY must be a JSON object of prefix to caller id")
    return MigrationConfig(database=database_settings(env), caller_id_registry=registry)


@dataclass(frozen=True)
class DeliveryConfig:
    """Settings of the database steps of the state machine (claim, confirm, record)."""

    database: DatabaseSettings
    # Claim what falls due within this many seconds: the schedule period.
    lookahead_seconds: int = 60
    # At most this many notifications per claim, so the state stays far below 256 KB.
    claim_batch_size: int = 200
    # A notification this late is expired instead of delivered.
    max_lateness_seconds: int = 900
    # A claim not confirmed this long after its due time is returned to pending.
    claim_grace_seconds: int = 300
    # A notification sending this long without an outcome becomes unknown.
    sending_lease_seconds: int = 600


def load_delivery_config(environ: Mapping[str, str] | None = None) -> DeliveryConfig:
    """Read the settings of the activator, confirm and record functions."""
    env = os.environ if environ is None else environ
    return DeliveryConfig(
        database=database_settings(env),
        lookahead_seconds=_integer(env, "LOOKAHEAD_SECONDS", 60),
        claim_batch_size=_integer(env, "CLAIM_BATCH_SIZE", 200),
        max_lateness_seconds=_integer(env, "MAX_LATENESS_SECONDS", 900),
        claim_grace_seconds=_integer(env, "CLAIM_GRACE_SECONDS", 300),
        sending_lease_seconds=_integer(env, "SENDING_LEASE_SECONDS", 600),
    )


@dataclass(frozen=True)
class TwilioSettings:
    """Phone calls: ``Client.calls.create(to, from_=caller id, url=TWILIO_URL)``."""

    account_sid: str
    auth_token: str = field(repr=False)
    twiml_url: str
    api_base_url: str = "https://api.twilio.com"
    timeout_seconds: int = 10


@dataclass(frozen=True)
class SmtpSettings:
    """E-mail over SMTP, with STARTTLS and login when configured."""

    host: str
    port: int
    mail_from: str
    subject: str
    body: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout_seconds: int = 10


@dataclass(frozen=True)
class PubNubSettings:
    """PubNub publish over its REST API."""

    publish_key: str = field(repr=False)
    subscribe_key: str
    uuid: str = "escalator"
    origin: str = "https://ps.pndsn.com"
    timeout_seconds: int = 10


def load_twilio_settings(environ: Mapping[str, str] | None = None) -> TwilioSettings:
    """Twilio settings; the account SID and token may come from ``TWILIO_SECRET_ARN``."""
    env = _with_secret(
        os.environ if environ is None else environ,
        "TWILIO_SECRET_ARN",
        {"TWILIO_ACCOUNT_SID": "account_sid", "TWILIO_AUTH_TOKEN": "auth_token"},
    )
    _require(env, "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_URL")
    return TwilioSettings(
        account_sid=env["TWILIO_ACCOUNT_SID"],
        auth_token=env["TWILIO_AUTH_TOKEN"],
        twiml_url=env["TWILIO_URL"],
        api_base_url=env.get("TWILIO_API_BASE_URL") or "https://api.twilio.com",
        timeout_seconds=_integer(env, "TWILIO_TIMEOUT_SECONDS", 10),
    )


def load_smtp_settings(environ: Mapping[str, str] | None = None) -> SmtpSettings:
    """SMTP settings; the login may come from ``SMTP_SECRET_ARN``."""
    env = _with_secret(
        os.environ if environ is None else environ,
        "SMTP_SECRET_ARN",
        {"SMTP_USERNAME": "username", "SMTP_PASSWORD": "password"},
    )
    _require(env, "SMTP_HOST", "MAIL_FROM")
    return SmtpSettings(
        host=env["SMTP_HOST"],
        port=_integer(env, "SMTP_PORT", 587),
        mail_from=env["MAIL_FROM"],
        subject=env.get("MAIL_SUBJECT") or "A new order is waiting for confirmation",
        body=env.get("MAIL_BODY") or "A new order is waiting for your confirmation.",
        username=env.get("SMTP_USERNAME") or None,
        password=env.get("SMTP_PASSWORD") or None,
        starttls=_boolean(env, "SMTP_STARTTLS", True),
        timeout_seconds=_integer(env, "SMTP_TIMEOUT_SECONDS", 10),
    )


def load_pubnub_settings(environ: Mapping[str, str] | None = None) -> PubNubSettings:
    """PubNub settings; the keys may come from ``PUBNUB_SECRET_ARN``."""
    env = _with_secret(
        os.environ if environ is None else environ,
        "PUBNUB_SECRET_ARN",
        {"PUBNUB_PUB_KEY": "publish_key", "PUBNUB_SUB_KEY": "subscribe_key"},
    )
    _require(env, "PUBNUB_PUB_KEY", "PUBNUB_SUB_KEY")
    return PubNubSettings(
        publish_key=env["PUBNUB_PUB_KEY"],
        subscribe_key=env["PUBNUB_SUB_KEY"],
        uuid=env.get("PUBNUB_UUID") or "escalator",
        origin=env.get("PUBNUB_ORIGIN") or "https://ps.pndsn.com",
        timeout_seconds=_integer(env, "PUBNUB_TIMEOUT_SECONDS", 10),
    )


def _require(env: Mapping[str, str], *names: str) -> None:
    missing = [name for name in names if not env.get(name)]
    if missing:
        raise ConfigError(f"missing required environment variable {', '.join(missing)}")


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"environment variable {name} must be true or false, got {raw!r}")


def dry_run_details(environ: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """What a dry-run delivery reports per channel, from the same variables as the
    real notifiers (the local stack)."""
    env = os.environ if environ is None else environ
    return {
        "phone": {"url": env.get("TWILIO_URL") or "(dry run: TWILIO_URL is not set)"},
        "email": {"subject": env.get("MAIL_SUBJECT") or "A new order is waiting for confirmation"},
        "pubnub": {},
        "console": {},
    }


def local_defaults(tick: int) -> dict[str, str]:
    """The delivery settings the local stack uses unless the environment says otherwise:
    claims and leases scaled to its schedule, so a restart picks up quickly."""
    return {
        "LOOKAHEAD_SECONDS": str(tick),
        "CLAIM_GRACE_SECONDS": str(max(5, 2 * tick)),
        "SENDING_LEASE_SECONDS": str(max(30, 4 * tick)),
    }
