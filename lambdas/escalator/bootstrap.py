"""Wiring: every entry point's use cases bound to the real adapters, built once per cold
start from the configuration.

Each handler makes one call, ``bootstrap.<entry point>().<use case>(...)``. Tests and
tools that change the environment call ``reset()``, as a new cold start would.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from escalator import delivery, retention, service
from escalator.channels import CHANNELS, Notifier
from escalator.channels.base import CallbackReader
from escalator.config import (
    CallbackConfig,
    DeliveryConfig,
    InitiatorConfig,
    LauncherConfig,
    MigrationConfig,
    PurgeConfig,
    load_callback_config,
    load_delivery_config,
    load_initiator_config,
    load_launcher_config,
    load_migration_config,
    load_purge_config,
    read_secret,
)
from escalator.database import Database, UnitOfWork
from escalator.errors import ConfigError
from escalator.lambda_invoker import LambdaInvoker
from escalator.limits import near_due_horizon
from escalator.migrations import default_sql_dir
from escalator.model import (
    CallbackAnswer,
    Delivery,
    MasterCredentials,
    Migrated,
    Outcome,
    Receipt,
    Recorded,
    RequestMessage,
    RequestOutcome,
    SignedCallback,
    StatusRecorded,
    StatusReport,
)
from escalator.windows import DeliveryWindows, StepFunctionsWindows


@dataclass(frozen=True)
class Initiator:
    """The initiator's use case, bound to its database and, when it has one, the delivery
    window it starts for near-due arrivals."""

    database: Database
    config: InitiatorConfig
    windows: DeliveryWindows | None = None

    @functools.cached_property
    def near_due(self) -> service.NearDue | None:
        """What a start claims at ingest: nothing without a window to start for it."""
        if self.windows is None:
            return None
        return service.NearDue(
            horizon=near_due_horizon(self.config.lookahead_seconds),
            grace=self.config.claim_grace_seconds,
        )

    def batch(self) -> RequestBatch:
        """The requests of one invocation: applied one by one, their near-due
        notifications delivered together."""
        return RequestBatch(self)

    def apply(self, message: RequestMessage) -> RequestOutcome:
        """Apply one request from the queue (``service.handle_request``)."""
        return service.handle_request(
            UnitOfWork(self.database),
            message,
            now=int(time.time()),
            max_schedule_ahead=self.config.max_schedule_ahead_seconds,
            max_lateness=self.config.max_lateness_seconds,
            near_due=self.near_due,
        )


@dataclass
class RequestBatch:
    """One invocation's requests: each applied in its own transaction (``apply``), then
    one delivery window for what they claimed as near-due (``deliver_near_due``)."""

    initiator: Initiator
    outcomes: list[RequestOutcome] = field(default_factory=list)

    def apply(self, message: RequestMessage) -> RequestOutcome:
        outcome = self.initiator.apply(message)
        self.outcomes.append(outcome)
        return outcome

    def finish(self) -> None:
        """The batch's request counters, then its near-due notifications' window."""
        service.count_requests(self.outcomes)
        self.deliver_near_due()

    def deliver_near_due(self) -> None:
        """``service.deliver_near_due`` for the requests applied (or seen before)."""
        if self.initiator.windows is not None:
            database = UnitOfWork(self.initiator.database)
            service.deliver_near_due(database, self.initiator.windows, self.outcomes)


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

    def release_window(self, *, execution: str, window: dict[str, Any]) -> delivery.WindowFailure:
        return delivery.release_window(
            UnitOfWork(self.database), execution=execution, window=window
        )

    def confirm(
        self,
        *,
        notification_id: int,
        execution: str,
        due: str | None = None,
        retry_count: int = 0,
        entered: str | None = None,
        run: str | None = None,
    ) -> delivery.Confirmation:
        return delivery.confirm(
            UnitOfWork(self.database),
            notification_id=notification_id,
            execution=execution,
            config=self.config,
            due=due,
            retry_count=retry_count,
            entered=entered,
            run=run,
        )

    def release_unconfirmed(self, *, notification_id: int, execution: str, run: str) -> bool:
        return delivery.release_unconfirmed(
            UnitOfWork(self.database), notification_id=notification_id, execution=execution, run=run
        )

    def record_provider_status(self, report: StatusReport) -> StatusRecorded:
        return delivery.record_provider_status(UnitOfWork(self.database), report)

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

    def deliver(self, item: Delivery, time_left: float | None = None) -> Receipt:
        """Deliver through the channel's adapter within ``time_left`` seconds
        (``delivery.deliver``)."""
        return delivery.deliver(self.for_channel(item.channel), item, time_left)

    def for_channel(self, channel: str) -> Notifier:
        return self.overrides.get(channel) or _configured_notifier(channel)


@dataclass(frozen=True)
class Migrator:
    """The migration function's use case, with the master connection it runs on."""

    config: MigrationConfig

    def run(self, master: MasterCredentials | None = None) -> Migrated:
        """Apply ``sql/`` and store the caller-id registry (``service.migrate_database``),
        as the master user: the credentials the launcher handed over, else the
        environment's (local runs)."""
        if master is not None:
            database = self.config.master_settings(master.username, master.password)
        elif self.config.database is not None:
            database = self.config.database
        else:
            raise ConfigError(
                "the migration has no database credentials: the stack's launcher hands them "
                "over in the invocation (or set DATABASE_URL when running it yourself)"
            )
        return service.migrate_database(
            UnitOfWork(Database(database)),
            database=database,
            sql_dir=default_sql_dir(),
            caller_id_registry=self.config.caller_id_registry,
        )


@dataclass(frozen=True)
class MigrationLauncher:
    """The launcher's use case: read the master secret, hand it to the migration."""

    config: LauncherConfig
    invoker: LambdaInvoker
    # Lambda answers a timed-out invocation a little after the timeout: wait that long too.
    ANSWER_MARGIN_SECONDS: ClassVar[int] = 30

    def launch(self) -> dict[str, object]:
        """What the migration answered; ``MigrationError`` when it failed."""
        secret = read_secret(self.config.secret_arn)
        master = MasterCredentials(str(secret["username"]), str(secret["password"]))
        return service.launch_migration(self.invoker, self.config.migration_function, master)


@dataclass(frozen=True)
class CallStatusReceiver:
    """The status-callback receiver's use case: outside the VPC, it holds the providers'
    auth tokens and hands verified reports to the recorder, which writes the database."""

    config: CallbackConfig
    readers: tuple[CallbackReader, ...]
    invoker: LambdaInvoker

    def receive(self, callback: SignedCallback) -> CallbackAnswer:
        return service.receive_status_callback(
            self.readers, self.invoker, self.config.recorder_function, callback
        )


def callback_readers() -> tuple[CallbackReader, ...]:
    """The status-callback reader of every channel that has status callbacks."""
    return tuple(
        channel.callbacks.reader() for channel in CHANNELS.values() if channel.callbacks is not None
    )


@functools.cache
def call_status_receiver() -> CallStatusReceiver:
    return CallStatusReceiver(load_callback_config(), callback_readers(), LambdaInvoker())


@functools.cache
def initiator() -> Initiator:
    config = load_initiator_config()
    windows = None
    if config.delivery_window_arn is not None:
        from botocore.config import Config

        # A start that hangs is given up soon: the claims go back to the ticks.
        client = Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 2})
        windows = StepFunctionsWindows(config.delivery_window_arn, config=client)
    return Initiator(Database(config.database), config, windows)


@functools.cache
def delivery_steps() -> DeliverySteps:
    config = load_delivery_config()
    return DeliverySteps(Database(config.database), config)


@dataclass(frozen=True)
class Purger:
    """The hourly purge, bound to its database (as the purge's role) and retention."""

    config: PurgeConfig
    database: Database = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "database", Database(self.config.database))

    def purge(self, time_left: Callable[[], float] | None = None) -> retention.PurgeResult:
        return retention.purge_and_report(
            self.database, timedelta(days=self.config.retention_days), time_left=time_left
        )


@functools.cache
def purger() -> Purger:
    return Purger(load_purge_config())


@functools.cache
def notifiers() -> Notifiers:
    return Notifiers()


@functools.cache
def migrator() -> Migrator:
    return Migrator(load_migration_config())


@functools.cache
def migration_launcher() -> MigrationLauncher:
    from botocore.config import Config

    config = load_launcher_config()
    # The client waits as long as the migration may run, and never tries again: a second
    # invocation could start a migration while the first one still runs.
    client = Config(
        read_timeout=config.migration_timeout_seconds + MigrationLauncher.ANSWER_MARGIN_SECONDS,
        retries={"total_max_attempts": 1},
    )
    return MigrationLauncher(config, LambdaInvoker(config=client))


@functools.cache
def _configured_notifier(channel: str) -> Notifier:
    if channel not in CHANNELS:
        raise ConfigError(f"unknown channel {channel!r}")
    return CHANNELS[channel].notifier()


def reset() -> None:
    """Forget everything built so far, as a new cold start would."""
    for cached in (
        initiator,
        delivery_steps,
        notifiers,
        migrator,
        migration_launcher,
        call_status_receiver,
        purger,
        _configured_notifier,
    ):
        cached.cache_clear()
