"""Wiring: build each entry point's service from the configuration, once per cold start."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from escalator.channels import CHANNELS, Notifier
from escalator.config import (
    ConfigError,
    DeliveryConfig,
    load_delivery_config,
    load_initiator_config,
)
from escalator.database import Database, UnitOfWork
from escalator.model import RequestMessage, RequestOutcome
from escalator.service import handle_request

Initiator = Callable[[RequestMessage], RequestOutcome]


@functools.cache
def initiator() -> Initiator:
    """The initiator's request handler, bound to the configured database."""
    config = load_initiator_config()
    database = Database(config.database)

    def handle(message: RequestMessage) -> RequestOutcome:
        return handle_request(
            UnitOfWork(database),
            message,
            now=int(time.time()),
            max_schedule_ahead=config.max_schedule_ahead_seconds,
        )

    return handle


@functools.cache
def delivery_config() -> DeliveryConfig:
    """The settings of the activator, confirm and record functions."""
    return load_delivery_config()


@functools.cache
def delivery_database() -> Database:
    return Database(delivery_config().database)


def unit_of_work() -> UnitOfWork:
    """A unit of work on the delivery functions' database."""
    return UnitOfWork(delivery_database())


# Notifiers put in place of the configured ones (the local stack's dry-run outbox).
_notifier_overrides: dict[str, Notifier] = {}


def override_notifier(channel: str, replacement: Notifier | None) -> None:
    """Use ``replacement`` for ``channel`` (``None`` restores the configured notifier)."""
    if replacement is None:
        _notifier_overrides.pop(channel, None)
    else:
        _notifier_overrides[channel] = replacement


def notifier(channel: str) -> Notifier:
    """The channel's notifier, built from its configuration once per cold start."""
    return _notifier_overrides.get(channel) or _configured_notifier(channel)


@functools.cache
def _configured_notifier(channel: str) -> Notifier:
    if channel not in CHANNELS:
        raise ConfigError(f"unknown channel {channel!r}")
    return CHANNELS[channel].notifier()


def reset() -> None:
    """Forget everything built so far, as a new cold start would (for tests and tools)."""
    for cached in (initiator, delivery_config, delivery_database, _configured_notifier):
        cached.cache_clear()
