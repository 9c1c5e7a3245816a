"""The stack's settings, read from the CDK context (``cdk.json`` or ``-c key=value``).

Each setting is a field of ``StackSettings`` whose name is its context key; the field's
default is the one default, and ``__post_init__`` validates, whichever way the settings
were made. The providers' settings come from the channel registry: each channel names
the context keys of its non-secret settings, and ``<provider>_secret_name`` names an
existing secret to use instead of the one the stack creates.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from escalator.channels import CHANNELS
from escalator.limits import RECIPIENT_GUARD_SECONDS
from escalator.retention import DEFAULT_RETENTION_DAYS

if TYPE_CHECKING:  # (the CDK's modules load for seconds: the local stack reads only numbers)
    from constructs import Node

REMOVAL_POLICIES = ("retain", "snapshot", "destroy")
LOG_LEVELS = ("ALL", "ERROR", "FATAL", "OFF")
# A tick claims two periods ahead and hands the claim to an Express execution (at most
# five minutes): two minutes of waiting leave it room to deliver.
MAX_SCHEDULE_MINUTES = 1
# An inline Map state runs at most this many iterations at once.
MAX_INLINE_MAP_CONCURRENCY = 40
# RDS storage autoscaling adds storage once free space is at most this share (percent) of
# the allocated storage, for five minutes.
AUTOSCALING_FREE_PERCENT = 10
GIB = 1024**3
# How many Map iterations may compete for one sandbox of Confirm or Record. Each holds
# it at most a few seconds (confirm waits out at most CONFIRM_MAX_WAIT_SECONDS), so a
# throttled step waits a few times that at most: well inside the throttle retrier.
WAITERS_PER_SANDBOX = 4


@dataclass(frozen=True)
class ThrottleRetry:
    """How a task retries ``Lambda.TooManyRequestsException`` (all reserved sandboxes
    busy): jittered, each delay at most ``max_delay_seconds``, ``retries`` times after the
    first attempt; about a minute on average before a burst could end in a catch."""

    interval_seconds: int = 1
    max_delay_seconds: int = 8
    retries: int = 20


THROTTLE_RETRY = ThrottleRetry()
# What the tick's "Deliver notifications" retries: a start refused or unanswered (a
# re-run is harmless: the database decides what is still owed).
WINDOW_RETRIES = 1
# How often a failed hand-over to a fresh execution is retried.
HAND_OVER_RETRIES = 3
MIN_CONNECTION_CAP = 12
# The per-recipient guard's window, at most.
MAX_RECIPIENT_GUARD_SECONDS = 3600


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
    call_status: int = 2  # the recorder of Twilio's status callbacks
    purge: int = 1  # the hourly purge of what has finished (one at a time)

    @property
    def total(self) -> int:
        return (
            self.initiator
            + self.activator
            + self.confirm
            + self.record
            + self.migrate
            + self.call_status
            + self.purge
        )

    @property
    def map_concurrency(self) -> int:
        """The most Map iterations the Confirm and Record reservations can serve."""
        return min(MAX_INLINE_MAP_CONCURRENCY, WAITERS_PER_SANDBOX * min(self.confirm, self.record))


def connection_budget(cap: int) -> ConnectionBudget:
    """Share ``cap`` connections among the database functions (reserved concurrency)."""
    if cap < MIN_CONNECTION_CAP:
        raise SettingsError(f"db_connection_cap must be at least {MIN_CONNECTION_CAP}, got {cap}")
    initiator = max(2, cap // 6)
    activator = 2
    fixed = ConnectionBudget(initiator=initiator, activator=activator, confirm=0, record=0)
    rest = cap - fixed.total
    return ConnectionBudget(
        initiator=initiator, activator=activator, confirm=rest - rest // 2, record=rest // 2
    )


@dataclass(frozen=True)
class StackSettings:
    """Every knob of the stack, with safe defaults. A field's name is its context key."""

    db_instance_class: str = "t4g.micro"
    db_allocated_storage_gib: int = 20
    # Storage autoscaling grows the volume up to this size.
    db_max_allocated_storage_gib: int = 100
    # The DatabaseStorageLow alarm: free storage below this share (percent) of
    # db_allocated_storage_gib, which autoscaling never leaves when it can still act.
    db_free_storage_alarm_percent: int = 5
    db_multi_az: bool = False
    db_deletion_protection: bool = True
    db_removal_policy: str = "retain"
    db_backup_retention_days: int = 7
    db_connection_cap: int = 31
    schedule_minutes: int = 1
    # What the delivery windows (Express executions) log: ERROR (failed windows only),
    # ALL (every step, for a closer look; billed per GB ingested), FATAL or OFF.
    delivery_log_level: str = "ERROR"
    # The Map's MaxConcurrency; derived from the connection budget unless given.
    max_concurrency: int | None = None
    log_retention_days: int = 30
    # Finished processes, their notifications and the request log are deleted after this
    # many days (the request log never before a request could come back from the
    # dead-letter queue: escalator.retention.REQUEST_LOG_HORIZON).
    retention_days: int = DEFAULT_RETENTION_DAYS
    producer_arns: tuple[str, ...] = ()
    alarm_topic_arn: str | None = None
    # The alarm on calls nobody took (busy, no-answer, failed, canceled): over this share,
    # in percent, of the calls that ended within 15 minutes.
    unanswered_calls_alarm_percent: int = 50
    # JSON object of number prefixes to caller ids, stored in the database at deploy.
    caller_id_registry: str | None = None
    # The per-recipient guard: a delivery covers other processes' notifications to the
    # same channel and target falling due within this many seconds after it (0: off).
    recipient_guard_seconds: int = RECIPIENT_GUARD_SECONDS
    # Provider settings that are not secret: environment variable name -> value.
    provider: dict[str, str] = field(default_factory=dict)
    # Existing secrets to use instead of the ones the stack creates: channel -> name.
    existing_secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        minimums = {
            "db_allocated_storage_gib": 20,
            "db_backup_retention_days": 1,
            "schedule_minutes": 1,
            "log_retention_days": 1,
            "retention_days": 1,
        }
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise SettingsError(
                    f"context {name} must be at least {minimum}, got {getattr(self, name)}"
                )
        if self.max_concurrency is not None:
            limit = self.budget.map_concurrency
            if not 1 <= self.max_concurrency <= limit:
                raise SettingsError(
                    f"context max_concurrency must be from 1 to {limit}, got "
                    f"{self.max_concurrency}: an inline Map runs at most "
                    f"{MAX_INLINE_MAP_CONCURRENCY} at once, and the database steps' reserved "
                    f"concurrency (db_connection_cap {self.db_connection_cap}) serves "
                    f"{WAITERS_PER_SANDBOX} iterations per sandbox"
                )
        if not 1 <= self.unanswered_calls_alarm_percent <= 100:
            raise SettingsError(
                "context unanswered_calls_alarm_percent must be from 1 to 100, got "
                f"{self.unanswered_calls_alarm_percent}"
            )
        if not 1 <= self.db_free_storage_alarm_percent < AUTOSCALING_FREE_PERCENT:
            raise SettingsError(
                "context db_free_storage_alarm_percent must be from 1 to "
                f"{AUTOSCALING_FREE_PERCENT - 1}, got {self.db_free_storage_alarm_percent}: "
                f"storage autoscaling acts at {AUTOSCALING_FREE_PERCENT} % free, so a share "
                "that high would fire at every ordinary autoscaling step"
            )
        if not 0 <= self.recipient_guard_seconds <= MAX_RECIPIENT_GUARD_SECONDS:
            raise SettingsError(
                f"context recipient_guard_seconds must be from 0 (off) to "
                f"{MAX_RECIPIENT_GUARD_SECONDS}, got {self.recipient_guard_seconds}: a longer "
                "window would swallow a later, real escalation to the same person"
            )
        if self.db_max_allocated_storage_gib < self.db_allocated_storage_gib:
            raise SettingsError(
                "context db_max_allocated_storage_gib must be at least db_allocated_storage_gib"
            )
        if self.schedule_minutes > MAX_SCHEDULE_MINUTES:
            raise SettingsError(
                f"context schedule_minutes must be {MAX_SCHEDULE_MINUTES}, got "
                f"{self.schedule_minutes}: a tick claims two periods ahead, and its delivery "
                "window, an Express execution, runs at most five minutes"
            )
        if self.delivery_log_level not in LOG_LEVELS:
            raise SettingsError(f"context delivery_log_level must be one of {LOG_LEVELS}")
        if self.db_removal_policy not in REMOVAL_POLICIES:
            raise SettingsError(f"context db_removal_policy must be one of {REMOVAL_POLICIES}")
        self.budget  # noqa: B018 - validates the cap early, with a clear message

    @property
    def budget(self) -> ConnectionBudget:
        return connection_budget(self.db_connection_cap)

    @property
    def map_concurrency(self) -> int:
        """The Map's MaxConcurrency: as given, else what the budget serves."""
        return self.max_concurrency or self.budget.map_concurrency

    @property
    def free_storage_alarm_bytes(self) -> int:
        """Below this much free storage (bytes, as RDS reports ``FreeStorageSpace``)
        autoscaling is not keeping up: ``db_free_storage_alarm_percent`` of the first
        allocation, the least the volume ever holds (autoscaling only grows it)."""
        return self.db_allocated_storage_gib * GIB * self.db_free_storage_alarm_percent // 100

    @property
    def schedule_seconds(self) -> int:
        return self.schedule_minutes * 60


def from_context(node: Node) -> StackSettings:
    """Read the settings; raise ``SettingsError`` naming a malformed value."""
    hints = typing.get_type_hints(StackSettings)
    values: dict[str, Any] = {}
    for item in fields(StackSettings):
        raw = node.try_get_context(item.name)
        if raw is not None and item.name not in ("provider", "existing_secrets"):
            values[item.name] = _convert(item.name, raw, hints[item.name])
    values["provider"] = {
        variable: str(node.try_get_context(key))
        for channel in CHANNELS.values()
        for key, variable in channel.settings.items()
        if node.try_get_context(key) is not None
    }
    values["existing_secrets"] = {
        name: str(node.try_get_context(channel.secret.context_key))
        for name, channel in CHANNELS.items()
        if channel.secret is not None and node.try_get_context(channel.secret.context_key)
    }
    return StackSettings(**values)


def _convert(key: str, raw: Any, kind: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool) or str(raw).lower() in ("true", "false"):
            return raw if isinstance(raw, bool) else str(raw).lower() == "true"
        raise SettingsError(f"context {key} must be true or false, got {raw!r}")
    if kind is int or kind == int | None:
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"context {key} must be an integer, got {raw!r}") from None
    if kind == tuple[str, ...]:
        if isinstance(raw, str):
            raw = json.loads(raw) if raw.startswith("[") else raw.split(",")
        return tuple(str(item).strip() for item in raw if str(item).strip())
    if isinstance(raw, dict):  # a JSON object given as such in cdk.json
        return json.dumps(raw)
    text = str(raw)
    if key == "db_removal_policy":
        return text.lower()
    if key == "delivery_log_level":
        return text.upper()
    if kind == str | None:
        return text or None
    return text
