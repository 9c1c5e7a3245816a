"""Wiring: every entry point's use cases bound to the real adapters, built once per cold
start from the configuration.

Each handler makes one call, ``bootstrap.<entry point>().<use case>(...)``. Tests and
tools that change the environment call ``reset()``, as a new cold start would.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from escalator import delivery, service
from escalator.channels import CHANNELS, Notifier
from escalator.config import (
    DeliveryConfig,
    InitiatorConfig,
    MigrationConfig,
    load_delivery_config,
    load_initiator_config,
    load_migration_config,
)
from escalator.database import Database, UnitOfWork
from escalator.errors import ConfigError
from escalator.migrations import default_sql_dir
from escalator.model import (
    Delivery,
    Migrated,
    Outcome,
    Receipt,
    Recorded,
    RequestMessage,
    RequestOutcome,
)


@dataclass(frozen=True)
class Initiator:
    """The initiator's use case, bound to its database."""

    database: Database
    config: InitiatorConfig

    def apply(self, message: RequestMessage) -> RequestOutcome:
        """Apply one request from the queue (``service.handle_request``)."""
        return service.handle_request(
            UnitOfWork(self.database),
            message,
            now=int(time.time()),
            max_schedule_ahead=self.config.max_schedule_ahead_seconds,
        )


@dataclass(frozen=True)
class DeliverySteps:
    """The state machine's database steps (``escalator.delivery``), bound to their
    database and settings."""

    database: Database
    config: DeliveryConfig

    def claim(self, *, execution: str, lookahead: int | None = None) -> delivery.Claim:
        return delivery.claim_due(
            UnitOfWork(self.database), execution=execution, config=self.config, lookahead=lookahead
        )

    def confirm(
        self, *, notification_id: int, execution: str, due: str | None = None
    ) -> delivery.Confirmation:
        return delivery.confirm(
            UnitOfWork(self.database),
            notification_id=notification_id,
            execution=execution,
            config=self.config,
            due=due,
        )

    def record(self, *, notification_id: int, execution: str, outcome: Outcome) -> Recorded:
        return delivery.record_outcome(
            UnitOfWork(self.database),
            notification_id=notification_id,
            execution=execution,
            outcome=outcome,
        )


class Notifiers:
    """The notifier functions' use case: each channel's adapter is built from its
    configuration when first needed, so a notifier function reads only its own."""

    def __init__(self) -> None:
        # Put in place of the configured adapters (the local stack's dry-run outbox).
        self.overrides: dict[str, Notifier] = {}

    def deliver(self, item: Delivery) -> Receipt:
        """Deliver through the channel's adapter (``delivery.deliver``)."""
        return delivery.deliver(self.for_channel(item.channel), item)

    def for_channel(self, channel: str) -> Notifier:
        return self.overrides.get(channel) or _configured_notifier(channel)


@dataclass(frozen=True)
class Migrator:
    """The migration function's use case, with the master connection it runs on."""

    config: MigrationConfig

    def run(self) -> Migrated:
        """Apply ``sql/`` and store the caller-id registry (``service.migrate_database``)."""
        return service.migrate_database(
            UnitOfWork(Database(self.config.database)),
            database=self.config.database,
            sql_dir=default_sql_dir(),
            caller_id_registry=self.config.caller_id_registry,
        )


@functools.cache
def initiator() -> Initiator:
    config = load_initiator_config()
    return Initiator(Database(config.database), config)


@functools.cache
def delivery_steps() -> DeliverySteps:
    config = load_delivery_config()
    return DeliverySteps(Database(config.database), config)


@functools.cache
def notifiers() -> Notifiers:
    return Notifiers()


@functools.cache
def migrator() -> Migrator:
    return Migrator(load_migration_config())


@functools.cache
def _configured_notifier(channel: str) -> Notifier:
    if channel not in CHANNELS:
        raise ConfigError(f"unknown channel {channel!r}")
    return CHANNELS[channel].notifier()


def reset() -> None:
    """Forget everything built so far, as a new cold start would."""
    for cached in (initiator, delivery_steps, notifiers, migrator, _configured_notifier):
        cached.cache_clear()
