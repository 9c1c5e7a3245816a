"""PostgreSQL allows exactly the transitions the lifecycles declare (escalator.lifecycle):
every pair of states tried on a real row, as the application role; and every statement of
the repository, run on a row in each state, moves it only along its lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from escalator.config import DatabaseSettings
from escalator.database import Database, UnitOfWork
from escalator.errors import DatabaseError
from escalator.lifecycle import (
    FORBIDDEN_TRANSITION,
    NOTIFICATION,
    PROCESS,
    Lifecycle,
    NotificationEvent,
    NotificationState,
    ProcessEvent,
)
from escalator.model import CONFIRM_TOKEN_SEPARATOR, StatusReport
from tests.support.lifecycle import (
    insert_notification,
    insert_process,
    notification_columns,
    process_columns,
    set_columns,
)
from tests.support.steps import ENTERED, EXECUTION, EXPIRE_AFTER, RUN

N = NotificationState
E = NotificationEvent


@pytest.fixture
def application(application_url: str) -> Iterator[Any]:
    """A cursor of the application role on this test's database, in a transaction that is
    never committed."""
    with closing(psycopg2.connect(application_url)) as connection, connection.cursor() as cursor:
        yield cursor


def hint(lifecycle: Lifecycle[Any, Any], source: StrEnum) -> str:
    """What PostgreSQL lists as allowed from ``source``: each target with its event."""
    allowed = sorted(
        (str(item.target), str(item.event))
        for item in lifecycle.transitions
        if item.source == source
    )
    if not allowed:
        return f"{source} is final"
    return f"from {source}: " + ", ".join(f"{target} ({event})" for target, event in allowed)


@dataclass(frozen=True)
class Attempt:
    """A row put in one state and updated to another: the row, and PostgreSQL's refusal."""

    row_id: int
    refused: psycopg2.Error | None


def attempt(cursor: Any, put: Callable[[], int], table: str, to: dict[str, Any]) -> Attempt:
    """Put a row in a state (``put``), then update it to the one ``to`` describes; undone
    either way."""
    cursor.execute("SAVEPOINT attempt")
    row_id = put()
    try:
        set_columns(cursor, table, row_id, to)
        refused = None
    except psycopg2.Error as exc:
        refused = exc
    cursor.execute("ROLLBACK TO SAVEPOINT attempt")
    return Attempt(row_id, refused)


def assert_exactly_the_lifecycle(
    lifecycle: Lifecycle[Any, Any], attempts: dict[tuple[Any, Any], Attempt]
) -> None:
    """Every pair of distinct states the lifecycle lists was accepted, every other one
    refused by its trigger, naming the row and both states and listing what is allowed;
    a state updated to itself is no transition."""
    accepted = {pair for pair, tried in attempts.items() if tried.refused is None}
    assert accepted == lifecycle.allowed() | {(state, state) for state in lifecycle.states}
    refused = {pair: tried for pair, tried in attempts.items() if tried.refused is not None}
    for (source, target), tried in refused.items():
        error = tried.refused
        assert error is not None
        assert (error.pgcode, error.diag.message_primary, error.diag.message_hint) == (
            FORBIDDEN_TRANSITION,
            f"{lifecycle.table} {tried.row_id}: no transition from {source} to {target}",
            hint(lifecycle, source),
        )


def test_postgres_allows_exactly_the_notification_transitions_the_lifecycle_lists(
    application: Any,
) -> None:
    # GIVEN an active process, and a notification it could be coalesced into
    process = insert_process(application, "restaurant-1")
    cover = insert_notification(application, process, 0, N.PENDING)
    positions = iter(range(1, 1000))

    # WHEN a notification in each state is updated to each state (with what that state
    # holds: only the lifecycle can refuse it)
    attempts = {
        (source, target): attempt(
            application,
            partial(
                insert_notification, application, process, next(positions), source, cover=cover
            ),
            "notification",
            notification_columns(target, cover=cover),
        )
        for source in NOTIFICATION.states
        for target in NOTIFICATION.states
    }

    # THEN PostgreSQL accepted exactly the transitions the lifecycle lists (17 of the 90
    # pairs of distinct states), and refused the others
    assert_exactly_the_lifecycle(NOTIFICATION, attempts)


def test_postgres_allows_exactly_the_process_transitions_the_lifecycle_lists(
    application: Any,
) -> None:
    process_ids = (f"restaurant-{n}" for n in range(1000))
    attempts = {
        (source, target): attempt(
            application,
            partial(insert_process, application, next(process_ids), source),
            "process",
            process_columns(target),
        )
        for source in PROCESS.states
        for target in PROCESS.states
    }

    assert_exactly_the_lifecycle(PROCESS, attempts)


@pytest.mark.parametrize(
    ("changed", "held"),
    [
        ({"confirm_token": sql.Literal("test-confirm-token")}, {}),
        ({}, {"provider_ref": sql.Literal("CA0001")}),
        ({}, {"provider_status": sql.Literal("ringing")}),
    ],
    ids=["confirm not withdrawn", "provider reference bound", "provider status reported"],
)
def test_a_notification_being_sent_goes_back_to_pending_only_when_its_confirm_is_withdrawn(
    application: Any, changed: dict[str, Any], held: dict[str, Any]
) -> None:
    # GIVEN a notification being sent (with what a provider reported about it, if anything)
    process = insert_process(application, "restaurant-1")
    sending = insert_notification(application, process, 0, N.SENDING, channel="phone", **held)

    # WHEN a statement moves it back to pending without withdrawing its confirm, or after
    # a provider has reported its delivery
    tried = attempt(
        application,
        lambda: sending,
        "notification",
        {**notification_columns(N.PENDING), **changed},
    )

    # THEN PostgreSQL refuses it: the notifier may have run
    assert tried.refused is not None
    assert tried.refused.pgcode == FORBIDDEN_TRANSITION
    assert tried.refused.diag.message_primary == (
        f"notification {sending}: no transition from sending to pending"
    )
    assert "only when its confirm is withdrawn" in str(tried.refused.diag.message_detail)


# --- every statement of the repository, on a row in each state ----------------------------

OTHER = EXECUTION + "-other"
TOKEN = f"{ENTERED}{CONFIRM_TOKEN_SEPARATOR}{RUN}"
COVERED = "+385911110001"


@dataclass(frozen=True)
class EveryState:
    """A process with a notification in each state (held by ``EXECUTION``, due long ago,
    its claim and sending lease lapsed), and another process's deliveries to cover one."""

    process: int
    covers: int
    rows: dict[NotificationState, int]


@pytest.fixture
def every_state(database_url: str) -> EveryState:
    with closing(psycopg2.connect(database_url)) as connection, connection:
        cursor = connection.cursor()
        covers = insert_process(cursor, "covers")
        # a delivery that reached the claimed one's recipient, one that failed
        reached = insert_notification(cursor, covers, 0, N.SENT, channel="phone", target=COVERED)
        failed = insert_notification(cursor, covers, 1, N.FAILED, channel="phone")
        process = insert_process(cursor, "restaurant-1")
        late = sql.SQL("now() - make_interval(secs => {})").format(sql.Literal(EXPIRE_AFTER + 60))
        rows = {
            state: insert_notification(
                cursor,
                process,
                position,
                state,
                channel="phone",
                target=COVERED if state == N.CLAIMED else f"+38591111{position:04}",
                due_at=late,
                owner=EXECUTION,
                cover=failed,  # (the coalesced one waits for it)
                confirm_token=sql.Literal(TOKEN if state == N.SENDING else None),
                lease_until=sql.SQL(
                    "now() - interval '1 second'" if state in (N.CLAIMED, N.SENDING) else "NULL"
                ),
            )
            for position, state in enumerate(NOTIFICATION.states)
        }
        assert reached
    return EveryState(process, covers, rows)


Operation = Callable[[UnitOfWork, EveryState, int], object]


def callback(uow: UnitOfWork, fixture: EveryState, notification_id: int) -> None:
    """A call's status callback, as ``delivery.record_provider_status`` records it."""
    record = uow.provider_statuses.lock(
        channel="phone", notification_id=notification_id, provider_ref="CA0001"
    )
    if record is not None and record.state in (N.SENDING, N.UNKNOWN):
        report = StatusReport("phone", "CA0001", "ringing", 1.0, notification_id)
        uow.provider_statuses.set_status(notification_id, report, settle=record.state == N.UNKNOWN)


def record(outcome: NotificationState) -> Operation:
    """The record step's statement, storing ``outcome``."""

    def operation(uow: UnitOfWork, fixture: EveryState, notification_id: int) -> None:
        uow.notifications.finish(
            notification_id,
            owner=EXECUTION,
            state=outcome,
            provider_ref="CA0001" if outcome == N.SENT else None,
            error=None if outcome == N.SENT else "why",
        )

    return operation


def stop_then(then: Operation) -> Operation:
    """``then``, once the process has been stopped."""

    def operation(uow: UnitOfWork, fixture: EveryState, notification_id: int) -> None:
        uow.processes.stop("restaurant-1")
        then(uow, fixture, notification_id)

    return operation


# Each statement (or a use case's pair of them), the events it may cause, and whether it
# is about one notification (run for each) or about all.
OPERATIONS: dict[str, tuple[Operation, set[StrEnum], bool]] = {
    "claim due": (
        lambda uow, f, _: uow.notifications.claim_due(
            owner=OTHER, lookahead=60, limit=100, grace=60
        ),
        {E.CLAIM},
        False,
    ),
    "claim arrivals": (
        lambda uow, f, _: uow.notifications.claim_arrivals(
            f.process, owner=OTHER, horizon=60, grace=60
        ),
        {E.CLAIM},
        False,
    ),
    "release a window's claims": (
        lambda uow, f, _: uow.notifications.release(EXECUTION),
        {E.RELEASE},
        False,
    ),
    "housekeep": (
        lambda uow, f, _: uow.notifications.housekeep(expire_after=EXPIRE_AFTER),
        {E.RELEASE, E.LAPSE, E.EXPIRE},
        False,
    ),
    "settle covers": (lambda uow, f, _: uow.notifications.settle_covered(), {E.UNCOVER}, False),
    "stop": (
        lambda uow, f, _: uow.processes.stop("restaurant-1"),
        {E.STOP, ProcessEvent.STOP},
        False,
    ),
    "stop, then settle covers": (
        stop_then(lambda uow, f, _: uow.notifications.settle_covered()),
        {E.STOP, ProcessEvent.STOP, E.UNCOVER},
        False,
    ),
    "complete finished processes": (
        lambda uow, f, _: uow.processes.complete_finished([f.process, f.covers]),
        {ProcessEvent.COMPLETE},
        False,
    ),
    "release unconfirmed": (
        lambda uow, f, n: uow.notifications.release_unconfirmed(n, owner=EXECUTION, run=RUN),
        {E.RELEASE, E.WITHDRAW},
        True,
    ),
    "expire if late": (
        lambda uow, f, n: uow.notifications.expire_if_late(
            n, owner=EXECUTION, expire_after=EXPIRE_AFTER
        ),
        {E.EXPIRE},
        True,
    ),
    "coalesce if covered": (
        lambda uow, f, n: uow.notifications.coalesce_if_covered(
            n, owner=EXECUTION, window=60, channels=["phone"]
        ),
        {E.COALESCE},
        True,
    ),
    "start sending": (
        lambda uow, f, n: uow.notifications.start_sending(n, owner=EXECUTION, lease=600),
        {E.CONFIRM},
        True,
    ),
    "stop, then resume sending": (
        stop_then(
            lambda uow, f, n: uow.notifications.resume_sending(n, owner=EXECUTION, tokens=[TOKEN])
        ),
        {E.STOP, ProcessEvent.STOP, E.ABANDON},
        True,
    ),
    **{
        f"record {outcome}": (record(outcome), {E.RECORD}, True)
        for outcome in NOTIFICATION.targets(E.RECORD)
    },
    "provider's callback": (callback, {E.CALLBACK}, True),
}


LIFECYCLES: tuple[Lifecycle[Any, Any], ...] = (NOTIFICATION, PROCESS)


def states(cursor: Any, table: str) -> dict[int, str]:
    """The state of each row of ``table``, by id."""
    cursor.execute(sql.SQL("SELECT id, state FROM {}").format(sql.Identifier(table)))
    return dict(cursor.fetchall())


def test_every_statement_moves_a_notification_in_any_state_only_along_its_lifecycle(
    application_url: str, every_state: EveryState
) -> None:
    # GIVEN a notification in each state, and the application role's connection
    database = Database(DatabaseSettings(dsn=application_url))
    made: set[tuple[str, str, str]] = set()
    for name, (operation, events, each) in OPERATIONS.items():
        for notification_id in every_state.rows.values() if each else [0]:
            # WHEN the statement runs (in a transaction rolled back after)
            try:
                with UnitOfWork(database) as uow:
                    cursor = database.connection().cursor()
                    before = {item.table: states(cursor, item.table) for item in LIFECYCLES}
                    operation(uow, every_state, notification_id)
                    after = {item.table: states(cursor, item.table) for item in LIFECYCLES}
            except DatabaseError as exc:
                pytest.fail(f"{name}{f' (of {notification_id})' if each else ''}: {exc}")

            # THEN each row it changed moved along a transition of its events
            for lifecycle in LIFECYCLES:
                for row_id, target in after[lifecycle.table].items():
                    source = before[lifecycle.table][row_id]
                    if source == target:
                        continue
                    caused = set(lifecycle.events_between(source, target)) & events
                    assert caused, f"{name} moved {lifecycle.table} {row_id}: {source} to {target}"
                    made |= {(str(event), source, target) for event in caused}

    # AND every transition the lifecycles list is one a statement makes
    declared = {
        (str(item.event), str(item.source), str(item.target))
        for lifecycle in LIFECYCLES
        for item in lifecycle.transitions
    }
    assert declared - made == set()
