"""The stack's settings, read from the CDK context (``cdk.json`` or ``-c key=value``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from constructs import Node

REMOVAL_POLICIES = ("retain", "snapshot", "destroy")


class SettingsError(ValueError):
    """A context value is missing or malformed."""


@dataclass(frozen=True)
class ConnectionBudget:
    """How many database connections each database function may hold at most."""

    initiator: int  # the SQS event source's maximum concurrency (at least 2)
    activator: int
    confirm: int
    record: int
    migrate: int = 1

    @property
    def total(self) -> int:
        return self.initiator + self.activator + self.confirm + self.record + self.migrate


def connection_budget(cap: int) -> ConnectionBudget:
    """Share ``cap`` connections among the database functions (reserved concurrency)."""
    if cap < 12:
        raise SettingsError(f"db_connection_cap must be at least 12, got {cap}")
    initiator = max(2, cap // 6)
    activator = 2
    rest = cap - initiator - activator - 1
    return ConnectionBudget(
        initiator=initiator, activator=activator, confirm=rest - rest // 2, record=rest // 2
    )


@dataclass(frozen=True)
class StackSettings:
    """Every knob of the stack, with safe defaults."""

    db_instance_class: str = "t4g.micro"
    db_allocated_storage_gib: int = 20
    db_multi_az: bool = False
    db_deletion_protection: bool = True
    db_removal_policy: str = "retain"
    db_backup_retention_days: int = 7
    db_connection_cap: int = 30
    schedule_minutes: int = 1
    max_concurrency: int = 40
    log_retention_days: int = 30
    producer_arns: tuple[str, ...] = ()
    alarm_topic_arn: str | None = None
    # Existing secrets to use instead of the ones the stack creates (by name).
    twilio_secret_name: str | None = None
    smtp_secret_name: str | None = None
    pubnub_secret_name: str | None = None
    # Provider settings that are not secret.
    provider: dict[str, str] = field(default_factory=dict)
    # JSON object of number prefixes to caller ids, stored in the database at deploy.
    caller_id_registry: str | None = None

    @property
    def budget(self) -> ConnectionBudget:
        return connection_budget(self.db_connection_cap)

    @property
    def schedule_seconds(self) -> int:
        return self.schedule_minutes * 60


# Context keys of the non-secret provider settings, and the variables they become.
PROVIDER_CONTEXT = {
    "twilio_url": "TWILIO_URL",
    "smtp_host": "SMTP_HOST",
    "smtp_port": "SMTP_PORT",
    "smtp_starttls": "SMTP_STARTTLS",
    "mail_from": "MAIL_FROM",
    "mail_subject": "MAIL_SUBJECT",
    "mail_body": "MAIL_BODY",
    "pubnub_origin": "PUBNUB_ORIGIN",
    "pubnub_uuid": "PUBNUB_UUID",
}


def from_context(node: Node) -> StackSettings:
    """Read the settings; raise ``SettingsError`` naming a malformed value."""
    defaults = StackSettings()

    def get(key: str, default: Any) -> Any:
        value = node.try_get_context(key)
        return default if value is None else value

    def integer(key: str, default: int, minimum: int = 1) -> int:
        value = get(key, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"context {key} must be an integer, got {value!r}") from None
        if number < minimum:
            raise SettingsError(f"context {key} must be at least {minimum}, got {number}")
        return number

    def boolean(key: str, default: bool) -> bool:
        value = get(key, default)
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise SettingsError(f"context {key} must be true or false, got {value!r}")

    removal = str(get("db_removal_policy", defaults.db_removal_policy)).lower()
    if removal not in REMOVAL_POLICIES:
        raise SettingsError(f"context db_removal_policy must be one of {REMOVAL_POLICIES}")
    producers = get("producer_arns", [])
    if isinstance(producers, str):
        producers = json.loads(producers) if producers.startswith("[") else producers.split(",")
    registry = get("caller_id_registry", None)
    if isinstance(registry, dict):
        registry = json.dumps(registry)
    settings = StackSettings(
        db_instance_class=str(get("db_instance_class", defaults.db_instance_class)),
        db_allocated_storage_gib=integer("db_allocated_storage_gib", 20, minimum=20),
        db_multi_az=boolean("db_multi_az", defaults.db_multi_az),
        db_deletion_protection=boolean("db_deletion_protection", True),
        db_removal_policy=removal,
        db_backup_retention_days=integer("db_backup_retention_days", 7),
        db_connection_cap=integer("db_connection_cap", defaults.db_connection_cap),
        schedule_minutes=integer("schedule_minutes", defaults.schedule_minutes),
        max_concurrency=integer("max_concurrency", defaults.max_concurrency),
        log_retention_days=integer("log_retention_days", defaults.log_retention_days),
        producer_arns=tuple(str(arn).strip() for arn in producers if str(arn).strip()),
        alarm_topic_arn=get("alarm_topic_arn", None) or None,
        twilio_secret_name=get("twilio_secret_name", None) or None,
        smtp_secret_name=get("smtp_secret_name", None) or None,
        pubnub_secret_name=get("pubnub_secret_name", None) or None,
        caller_id_registry=registry or None,
        provider={
            variable: str(node.try_get_context(key))
            for key, variable in PROVIDER_CONTEXT.items()
            if node.try_get_context(key) is not None
        },
    )
    settings.budget  # noqa: B018 - validates the cap early, with a clear message
    return settings
