"""All of Escalator's SQL: processes, notifications and the request log."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg2.extensions import cursor as Cursor

from escalator.contract import Notification
from escalator.lifecycle import (
    MAY_HAVE_REACHED,
    NOTIFICATION,
    UNDELIVERED,
    NotificationEvent,
    NotificationState,
    ProcessState,
)
from escalator.model import (
    CONFIRM_TOKEN_SEPARATOR,
    ClaimedNotification,
    Delivery,
    RequestMessage,
    RequestOutcome,
    StatusReport,
)


# The states of a notification and of a process, as the statements name them: ``{pending}``
# is 'pending', ``{active}`` 'active' (the two lifecycles share no name), and sets of them
# (escalator.lifecycle: PostgreSQL refuses a transition it does not list).
def _literal(state: str) -> str:
    """A state as an SQL string literal (a word of the lifecycle: nothing to escape)."""
    if not re.fullmatch(r"[a-z][a-z_-]*", state):
        raise ValueError(f"not a state's name: {state!r}")
    return f"'{state}'"


_STATES: dict[str, str] = {
    **{state.value: _literal(state.value) for state in NotificationState},
    **{state.value: _literal(state.value) for state in ProcessState},
}


def _states(states: Sequence[str]) -> str:
    """A list of states, as ``IN (...)`` reads it."""
    return ", ".join(_literal(str(state)) for state in states)


_STATE_SETS: dict[str, str] = {
    # what a stop cancels (a notification being sent keeps its course)
    "stoppable": _states(NOTIFICATION.sources(NotificationEvent.STOP)),
    # a delivery handed to its notifier: it may reach the person (it covers others)
    "covering": _states((NotificationState.SENDING, *MAY_HAVE_REACHED)),
    "reached": _states(MAY_HAVE_REACHED),
    # the outcomes the record step stores
    "recorded": _states(NOTIFICATION.targets(NotificationEvent.RECORD)),
}


@functools.cache
def _sql(statement: str, **parts: str) -> str:
    """``statement`` with its states (``{pending}``, ``{stoppable}``...) and ``parts``
    written in, once per statement: they run on every request and every delivery, and
    composing them anew each time (psycopg2.sql, quoting each state through the
    connection) took the local stack from 74-86 to 60-66 requests/s (bench/local_load.py)."""
    return statement.format(**_STATES, **_STATE_SETS, **parts)


# A notification coalesced into a delivery whose outcome is not known yet: it waits for it.
_WAITING = "n.state = {coalesced} AND n.finished_at IS NULL"

# A notification's recipient locked until the transaction ends (channel and recipient,
# the target for a row written without one): the guard's confirms and the record of the
# outcome they wait for take it in turn, so it is spelled once.
_LOCK_RECIPIENT = (
    "pg_advisory_xact_lock(hashtextextended(channel || ' ' || coalesce(recipient, target), 5))"
)

# Why a notification was coalesced, from its cover ``c`` and the cover's process ``cp``:
# the same words whatever the cover's outcome turns out to be (sent, or unknown).
_COVERED_BY = """'covered by notification ' || c.id || ' (process ' || cp.process_id
    || '), handed to its provider at '
    || to_char(c.sending_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


# A new active process, unless one with this id is active (then no row).
_INSERT_PROCESS = """
    INSERT INTO process (process_id) VALUES (%s)
    ON CONFLICT (process_id) WHERE state = {active} DO NOTHING
    RETURNING id
"""


@functools.cache
def _start_statement(count: int) -> str:
    """A process and its ``count`` notifications in one statement (one round trip; the
    notifications are written only when the process was), their values as parameters."""
    row = "(%s, %s, %s, %s::text, to_timestamp(%s), %s, %s::text, %s)"
    return _sql(
        """
        WITH started AS ({insert_process})
        INSERT INTO notification
            (process_ref, position, channel, target, recipient, due_at, state, error,
             finished_at)
        SELECT started.id, item.position, item.channel, item.target, item.recipient,
               item.due_at, item.state, item.error, CASE WHEN item.finished THEN now() END
        FROM started,
             (VALUES {rows}) AS item (position, channel, target, recipient, due_at, state,
                                      error, finished)
        RETURNING process_ref
        """,
        insert_process=_sql(_INSERT_PROCESS),
        rows=", ".join([row] * count),
    )


@dataclass(frozen=True)
class StoppedProcess:
    """A process a stop request ended, with how many notifications it cancelled."""

    process_ref: int
    cancelled: int


class ProcessRepository:
    """Escalation processes and their notifications."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def start(self, process_id: str, notifications: Sequence[Notification]) -> int | None:
        """Create an active process with its notifications; ``None`` if one is active.

        A notification with an unusable target is stored ``rejected`` with its reason,
        the others ``pending``.
        """
        if not notifications:
            self._cursor.execute(_sql(_INSERT_PROCESS), (process_id,))
            row = _one(self._cursor)
            return None if row is None else int(row.id)
        self._cursor.execute(
            _start_statement(len(notifications)),
            (
                process_id,
                *(
                    value
                    for position, item in enumerate(notifications)
                    for value in (
                        position,
                        item.channel,
                        _storable(item.target),
                        item.recipient,
                        item.at,
                        (
                            NotificationState.PENDING
                            if item.rejected is None
                            else NotificationState.REJECTED
                        ),
                        item.rejected,
                        item.rejected is not None,
                    )
                ),
            ),
        )
        row = _one(self._cursor)
        return None if row is None else int(row.process_ref)

    def stop(self, process_id: str) -> StoppedProcess | None:
        """Stop the active process and cancel its undelivered notifications; ``None`` if none.

        Notifications already being sent are left to record their outcome.
        """
        self._cursor.execute(
            _sql(
                """
                WITH stopped AS (
                    UPDATE process SET state = {stopped}, ended_at = now()
                    WHERE process_id = %s AND state = {active}
                    RETURNING id
                ), cancelled AS (
                    UPDATE notification AS n
                    SET state = {cancelled}, finished_at = now(), updated_at = now(),
                        claim_owner = NULL, lease_until = NULL
                    FROM stopped
                    WHERE n.process_ref = stopped.id AND n.state IN ({stoppable})
                    RETURNING n.id
                )
                SELECT stopped.id, (SELECT count(*) FROM cancelled) AS cancelled FROM stopped
                """
            ),
            (process_id,),
        )
        row = _one(self._cursor)
        return None if row is None else StoppedProcess(process_ref=row.id, cancelled=row.cancelled)

    def history(self, process_id: str) -> list[dict[str, Any]]:
        """Every process with this id, newest first, each with its notifications."""
        self._cursor.execute(
            """
            SELECT p.id AS process_ref, p.state AS process_state, p.started_at, p.ended_at,
                   n.id, n.position, n.channel, n.target, n.due_at, n.state, n.attempts,
                   n.provider_ref, n.error, n.finished_at, n.provider_status,
                   n.provider_status_at, n.call_duration_seconds, n.covered_by
            FROM process p LEFT JOIN notification n ON n.process_ref = p.id
            WHERE p.process_id = %s
            ORDER BY p.id DESC, n.position
            """,
            (process_id,),
        )
        processes: dict[int, dict[str, Any]] = {}
        for row in _all(self._cursor):
            process = processes.setdefault(
                row.process_ref,
                {
                    "process_id": process_id,
                    "state": row.process_state,
                    "started_at": _iso(row.started_at),
                    "ended_at": _iso(row.ended_at),
                    "notifications": [],
                },
            )
            if row.id is not None:
                process["notifications"].append(
                    {
                        "id": row.id,
                        "position": row.position,
                        "channel": row.channel,
                        "target": row.target,
                        "due_at": _iso(row.due_at),
                        "state": row.state,
                        "attempts": row.attempts,
                        "provider_ref": row.provider_ref,
                        "error": row.error,
                        "finished_at": _iso(row.finished_at),
                        "provider_status": row.provider_status,
                        "provider_status_at": _iso(row.provider_status_at),
                        "call_duration_seconds": row.call_duration_seconds,
                        "covered_by": row.covered_by,
                    }
                )
        return list(processes.values())

    def complete_finished(self, process_refs: Sequence[int]) -> list[int]:
        """Complete the active processes among these with nothing left to deliver; the
        ones completed.

        The process rows are locked first: two transactions recording the last two
        outcomes of a process at the same time would otherwise each still see the
        other's notification undelivered, and neither would complete the process. The
        check runs after the lock, in a statement of its own, so it sees what the
        transaction that held the lock committed.
        """
        if not process_refs:
            return []
        refs = sorted(set(process_refs))
        self._cursor.execute(
            _sql(
                "SELECT id FROM process WHERE id = ANY(%s) AND state = {active}"
                " ORDER BY id FOR UPDATE"
            ),
            (refs,),
        )
        if not _all(self._cursor):
            return []
        self._cursor.execute(
            _sql(
                """
                UPDATE process AS p SET state = {completed}, ended_at = now()
                WHERE p.id = ANY(%s) AND p.state = {active}
                  AND NOT EXISTS (
                      SELECT 1 FROM notification n
                      WHERE n.process_ref = p.id AND (n.state IN ({undelivered}) OR ({waiting}))
                  )
                RETURNING p.id
                """,
                undelivered=_states(UNDELIVERED),
                waiting=_sql(_WAITING),
            ),
            (refs,),
        )
        return [row.id for row in _all(self._cursor)]


@dataclass(frozen=True)
class Finished:
    """A notification whose outcome was recorded, and how late after its due time."""

    process_ref: int
    lateness_seconds: float
    state: str = NotificationState.SENT
    channel: str | None = None
    # whether coalesced notifications wait for this outcome (``settle_covered``)
    awaited: bool = True


@dataclass(frozen=True)
class Coalesced:
    """A notification the per-recipient guard coalesced, and the one that covered it;
    ``waiting`` while that one is still being sent (its outcome decides this one's)."""

    process_ref: int
    covered_by: int
    waiting: bool = False


@dataclass(frozen=True)
class CoverSettled:
    """What became of the notifications that waited for covers now settled: finished
    (the cover may have reached the person), back to pending (it did not: delivered after
    all), or cancelled (it did not, and their process was stopped meanwhile)."""

    finished: list[int]
    reopened: list[int]
    cancelled: list[int]
    # the processes of the finished ones (they may have nothing left to deliver)
    process_refs: list[int]


@dataclass(frozen=True)
class Housekeeping:
    """What the activator tidied up before claiming."""

    released: int
    unknown: list[int]
    expired: list[int]


class NotificationRepository:
    """The lifecycle of notifications: claim, confirm, record, and the clean-up of leases."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def housekeep(self, *, expire_after: int) -> Housekeeping:
        """Release lapsed claims, mark lapsed sends unknown, expire what is pending and
        more than ``expire_after`` seconds late.

        Returns the process refs touched by unknown and expired notifications.
        """
        self._cursor.execute(
            _sql(
                """
                UPDATE notification SET state = {pending}, claim_owner = NULL, lease_until = NULL,
                       updated_at = now()
                WHERE state = {claimed} AND lease_until < now()
                """
            )
        )
        released = self._cursor.rowcount
        self._cursor.execute(
            _sql(
                """
                UPDATE notification
                SET state = {unknown}, finished_at = now(), updated_at = now(),
                    error = 'no outcome was recorded before the sending lease ran out'
                WHERE state = {sending} AND lease_until < now()
                RETURNING process_ref
                """
            )
        )
        unknown = [row.process_ref for row in _all(self._cursor)]
        self._cursor.execute(
            _sql(
                """
                UPDATE notification
                SET state = {expired}, finished_at = now(), updated_at = now(),
                    error = 'more than ' || %s || ' seconds late'
                WHERE state = {pending} AND due_at < now() - make_interval(secs => %s)
                RETURNING process_ref
                """
            ),
            (expire_after, expire_after),
        )
        expired = [row.process_ref for row in _all(self._cursor)]
        return Housekeeping(released=released, unknown=unknown, expired=expired)

    def claim_due(
        self, *, owner: str, lookahead: int, limit: int, grace: int
    ) -> list[ClaimedNotification]:
        """Claim up to ``limit`` pending notifications due within ``lookahead``, oldest first;
        what ``owner`` claimed already when it holds claims (a retried claim).

        ``SKIP LOCKED`` lets overlapping executions claim disjoint rows.
        """
        held = self.claimed_by(owner)
        if held:
            return held
        self._cursor.execute(
            _sql(
                """
                WITH due AS (
                    SELECT id FROM notification
                    WHERE state = {pending} AND due_at < now() + make_interval(secs => %s)
                    ORDER BY due_at, id
                    LIMIT %s
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE notification AS n
                SET state = {claimed}, claim_owner = %s, updated_at = now(),
                    lease_until = greatest(n.due_at, now()) + make_interval(secs => %s)
                FROM due WHERE n.id = due.id
                RETURNING n.id, n.channel, {due} AS due, n.claim_owner AS owner
                """,
                due=_DUE_TEXT,
            ),
            (lookahead, limit, owner, grace),
        )
        return _claimed(_all(self._cursor))

    def claim_arrivals(
        self, process_ref: int, *, owner: str, horizon: int, grace: int
    ) -> list[ClaimedNotification]:
        """Claim for ``owner`` the pending notifications of this process due within
        ``horizon`` seconds (a process just started: nobody else can hold them)."""
        self._cursor.execute(
            _sql(
                """
                UPDATE notification
                SET state = {claimed}, claim_owner = %s, updated_at = now(),
                    lease_until = greatest(due_at, now()) + make_interval(secs => %s)
                WHERE process_ref = %s AND state = {pending}
                  AND due_at < now() + make_interval(secs => %s)
                RETURNING id, channel, {due} AS due, claim_owner AS owner
                """,
                due=_DUE_TEXT,
            ),
            (owner, grace, process_ref, horizon),
        )
        return _claimed(_all(self._cursor))

    def release(self, owner: str) -> int:
        """Return what ``owner`` holds claimed (not yet confirmed) to pending, for the
        ticks to claim; how many."""
        self._cursor.execute(
            _sql(
                """
                UPDATE notification SET state = {pending}, claim_owner = NULL, lease_until = NULL,
                       updated_at = now()
                WHERE state = {claimed} AND claim_owner = %s
                """
            ),
            (owner,),
        )
        return self._cursor.rowcount

    def release_unconfirmed(self, notification_id: int, *, owner: str, run: str) -> bool:
        """Return to pending a notification whose confirm step failed in the Map iteration
        ``run``: still claimed by ``owner``, or moved to sending by that iteration (its
        token names ``run``; the answer was lost), so its notifier never ran. Whether it
        was released."""
        self._cursor.execute(
            _sql(
                """
                UPDATE notification SET state = {pending}, claim_owner = NULL, lease_until = NULL,
                       confirm_token = NULL, updated_at = now()
                WHERE id = %s AND claim_owner = %s
                  AND (state = {claimed}
                       OR (state = {sending} AND split_part(confirm_token, %s, 2) = %s))
                """
            ),
            (notification_id, owner, CONFIRM_TOKEN_SEPARATOR, run),
        )
        return self._cursor.rowcount > 0

    def claimed_by(self, owner: str) -> list[ClaimedNotification]:
        """The notifications ``owner`` holds claimed (not yet confirmed), oldest first."""
        self._cursor.execute(
            _sql(
                """
                SELECT id, channel, {due} AS due, claim_owner AS owner FROM notification
                WHERE state = {claimed} AND claim_owner = %s
                """,
                due=_DUE_TEXT,
            ),
            (owner,),
        )
        return _claimed(_all(self._cursor))

    def any_due(self, *, lookahead: int) -> bool:
        """Whether pending notifications due within ``lookahead`` remain unclaimed."""
        self._cursor.execute(
            _sql(
                """
                SELECT EXISTS (
                    SELECT 1 FROM notification
                    WHERE state = {pending} AND due_at < now() + make_interval(secs => %s)
                ) AS due
                """
            ),
            (lookahead,),
        )
        row = _one(self._cursor)
        return bool(row and row.due)

    def expire_if_late(self, notification_id: int, *, owner: str, expire_after: int) -> bool:
        """Expire this claimed notification if it is more than ``expire_after`` seconds late."""
        self._cursor.execute(
            _sql(
                """
                UPDATE notification
                SET state = {expired}, finished_at = now(), updated_at = now(),
                    claim_owner = NULL, lease_until = NULL,
                    error = 'more than ' || %s || ' seconds late'
                WHERE id = %s AND state = {claimed} AND claim_owner = %s
                  AND due_at < now() - make_interval(secs => %s)
                """
            ),
            (expire_after, notification_id, owner, expire_after),
        )
        return self._cursor.rowcount == 1

    def start_sending(
        self, notification_id: int, *, owner: str, lease: int, token: str | None = None
    ) -> Delivery | None:
        """Move a claimed notification to sending if the claim is ``owner``'s and its
        process is active, remembering ``token`` (which entry of the confirm step did it);
        ``None`` otherwise."""
        self._cursor.execute(
            _sql(
                """
                UPDATE notification AS n
                SET state = {sending}, attempts = n.attempts + 1, updated_at = now(),
                    lease_until = now() + make_interval(secs => %s), confirm_token = %s,
                    sending_at = now()
                FROM process AS p
                WHERE n.id = %s AND n.state = {claimed} AND n.claim_owner = %s
                  AND p.id = n.process_ref AND p.state = {active}
                RETURNING n.id, p.process_id, n.channel, n.target,
                          extract(epoch FROM n.due_at)::bigint AS due_at
                """
            ),
            (lease, token, notification_id, owner),
        )
        row = _one(self._cursor)
        return None if row is None else _delivery(row)

    def coalesce_if_covered(
        self, notification_id: int, *, owner: str, window: int, channels: Sequence[str]
    ) -> Coalesced | None:
        """Coalesce ``owner``'s claimed notification when a delivery to the same channel
        and recipient (the target's normalised form; the target for a row written without
        one) covers it: one of another process, not stopped, handed to its notifier
        (``sending``, ``sent`` or ``unknown``: it may have reached the person) no earlier
        than ``window`` seconds before this one falls due; unless its process already had
        one to that recipient coalesced in the window (a process's later notifications
        are its own escalation). Only for ``channels``.

        The recipient is locked first (until the transaction ends): confirms for one
        target decide one at a time, each seeing what the one before it committed, so
        overlapping executions and near-due windows cannot both deliver.
        """
        self._cursor.execute(
            _sql(
                """
                SELECT {lock} FROM notification
                WHERE id = %s AND state = {claimed} AND claim_owner = %s AND channel = ANY(%s)
                """,
                lock=_LOCK_RECIPIENT,
            ),
            (notification_id, owner, list(channels)),
        )
        if _one(self._cursor) is None:
            return None
        self._cursor.execute(
            _sql(
                """
                UPDATE notification AS n
                SET state = {coalesced}, covered_by = cover.id, updated_at = now(),
                    claim_owner = NULL, lease_until = NULL,
                    -- (still being sent: this one waits for its outcome, unfinished)
                    finished_at = CASE WHEN cover.state = {sending} THEN NULL ELSE now() END,
                    error = cover.reason || CASE WHEN cover.state = {sending}
                                                 THEN ': waiting for its outcome' ELSE '' END
                -- (``me`` is ``n`` again: a LATERAL subquery may not read the updated table)
                FROM notification AS me
                CROSS JOIN LATERAL (
                    SELECT c.id, c.state, {covered_by} AS reason
                    FROM notification c JOIN process cp ON cp.id = c.process_ref
                    WHERE c.channel = me.channel
                      AND coalesce(c.recipient, c.target) = coalesce(me.recipient, me.target)
                      AND c.sending_at >= me.due_at - make_interval(secs => %(window)s)
                      AND c.process_ref <> me.process_ref
                      AND c.state IN ({covering})
                      AND cp.state <> {stopped}
                    ORDER BY c.sending_at, c.id
                    LIMIT 1
                ) AS cover
                WHERE n.id = %(id)s AND me.id = n.id AND n.state = {claimed}
                  AND n.claim_owner = %(owner)s
                  -- (a cover stands for one notification of a process, its first to the
                  -- recipient in the window: the ones after it are the process's own
                  -- escalation, and go out)
                  AND NOT EXISTS (
                      SELECT 1 FROM notification absorbed
                      WHERE absorbed.process_ref = me.process_ref AND absorbed.id <> me.id
                        AND absorbed.channel = me.channel
                        AND coalesce(absorbed.recipient, absorbed.target)
                            = coalesce(me.recipient, me.target)
                        AND absorbed.state = {coalesced}
                        AND absorbed.due_at >= me.due_at - make_interval(secs => %(window)s)
                  )
                RETURNING n.process_ref, cover.id AS covered_by, n.finished_at IS NULL AS waiting
                """,
                covered_by=_COVERED_BY,
            ),
            {"window": window, "id": notification_id, "owner": owner},
        )
        row = _one(self._cursor)
        if row is None:
            return None
        return Coalesced(
            process_ref=row.process_ref, covered_by=row.covered_by, waiting=row.waiting
        )

    def lock_recipient(self, notification_id: int, *, channels: Sequence[str]) -> None:
        """Lock this notification's recipient (as ``coalesce_if_covered`` does), if its
        channel is one of ``channels``: a cover's outcome and the confirms deciding
        whether it covers them take turns."""
        self._cursor.execute(
            _sql(
                "SELECT {lock} FROM notification WHERE id = %s AND channel = ANY(%s)",
                lock=_LOCK_RECIPIENT,
            ),
            (notification_id, list(channels)),
        )

    def settle_covered(self, cover: int | None = None) -> CoverSettled:
        """Settle what waits for a cover whose outcome is known (``cover`` only, or all):
        a cover that may have reached the person (``sent``, ``unknown``) finishes them; one
        that ended any other way (failed, cancelled, released to pending) covered nothing,
        and they are due again (``pending``, as scheduled), or ``cancelled`` when their
        process is no longer active."""
        self._cursor.execute(
            _sql(
                """
                UPDATE notification AS n
                SET finished_at = now(), updated_at = now(), error = {covered_by}
                FROM notification c JOIN process cp ON cp.id = c.process_ref
                WHERE {waiting} AND (%(cover)s::bigint IS NULL OR n.covered_by = %(cover)s)
                  AND c.id = n.covered_by AND c.state IN ({reached})
                RETURNING n.id, n.process_ref
                """,
                covered_by=_COVERED_BY,
                waiting=_sql(_WAITING),
            ),
            {"cover": cover},
        )
        finished = _all(self._cursor)
        self._cursor.execute(
            _sql(
                """
                UPDATE notification AS n
                SET state = CASE WHEN p.state = {active} THEN {pending} ELSE {cancelled} END,
                    finished_at = CASE WHEN p.state = {active} THEN NULL ELSE now() END,
                    covered_by = NULL, updated_at = now(),
                    error = 'its cover, notification ' || c.id || ' (process '
                            || cp.process_id || '), ended ' || c.state
                            || CASE WHEN p.state = {active} THEN ': delivered after all'
                                    ELSE ': not delivered, the process is ' || p.state END
                FROM notification c, process cp, process p
                WHERE {waiting} AND (%(cover)s::bigint IS NULL OR n.covered_by = %(cover)s)
                  AND c.id = n.covered_by AND cp.id = c.process_ref AND p.id = n.process_ref
                  AND c.state NOT IN ({covering})
                RETURNING n.id, n.state
                """,
                waiting=_sql(_WAITING),
            ),
            {"cover": cover},
        )
        ended = _all(self._cursor)
        return CoverSettled(
            finished=[row.id for row in finished],
            reopened=[row.id for row in ended if row.state == NotificationState.PENDING],
            cancelled=[row.id for row in ended if row.state == NotificationState.CANCELLED],
            process_refs=sorted({row.process_ref for row in finished}),
        )

    def resume_sending(
        self, notification_id: int, *, owner: str, tokens: Sequence[str]
    ) -> Delivery | str:
        """The delivery that the confirm step's entry (stored as one of ``tokens``) already
        moved to sending (its answer was lost); when its process has ended since, the
        notification is cancelled instead (the notifier never ran) and the reason is
        returned."""
        self._cursor.execute(
            _sql(
                """
                SELECT n.id, p.process_id, n.channel, n.target,
                       extract(epoch FROM n.due_at)::bigint AS due_at, p.state AS process_state
                FROM notification n JOIN process p ON p.id = n.process_ref
                WHERE n.id = %s AND n.state = {sending} AND n.claim_owner = %s
                  AND n.confirm_token = ANY(%s)
                FOR UPDATE OF n
                """
            ),
            (notification_id, owner, list(tokens)),
        )
        row = _one(self._cursor)
        if row is None:
            return self.why_not_sending(notification_id, owner=owner)
        if row.process_state == ProcessState.ACTIVE:
            return _delivery(row)
        self._cursor.execute(
            _sql(
                """
                UPDATE notification
                SET state = {cancelled}, finished_at = now(), updated_at = now(),
                    lease_until = NULL, claim_owner = NULL
                WHERE id = %s
                """
            ),
            (notification_id,),
        )
        return f"process is {row.process_state}"

    def why_not_sending(self, notification_id: int, *, owner: str) -> str:
        """A short reason why ``start_sending`` found nothing to do."""
        self._cursor.execute(
            """
            SELECT n.state, n.claim_owner, p.state AS process_state
            FROM notification n JOIN process p ON p.id = n.process_ref WHERE n.id = %s
            """,
            (notification_id,),
        )
        row = _one(self._cursor)
        if row is None:
            return "no such notification"
        if row.state == NotificationState.CLAIMED and row.claim_owner != owner:
            return "claimed by another execution"
        if row.state == NotificationState.CLAIMED:
            return f"process is {row.process_state}"
        return f"notification is {row.state}"

    def finish(
        self,
        notification_id: int,
        *,
        owner: str,
        state: str,
        provider_ref: str | None,
        error: str | None,
    ) -> Finished | None:
        """Record the outcome of ``owner``'s delivery: ``sent`` (with ``provider_ref``),
        ``failed`` or ``unknown`` (with ``error``); ``None`` when there is nothing to record
        (no longer ``owner``'s, or recorded already: see ``recorded``).

        A late outcome also replaces ``unknown`` from the lease: it is better knowledge. An
        ``unknown`` outcome of a notification that a provider's callback has bound to its
        call already (``provider_ref``) is ``sent``: the call was placed. ``awaited`` says
        whether coalesced notifications wait for this outcome (exact once the recipient is
        locked: ``lock_recipient``).
        """
        self._cursor.execute(
            _sql(
                """
                UPDATE notification
                SET state = CASE WHEN %(state)s = {unknown} AND provider_ref IS NOT NULL
                                 THEN {sent} ELSE %(state)s END,
                    error = CASE WHEN %(state)s = {unknown} AND provider_ref IS NOT NULL
                                 THEN NULL ELSE %(error)s END,
                    provider_ref = coalesce(%(ref)s, provider_ref),
                    finished_at = now(), updated_at = now(), lease_until = NULL
                WHERE id = %(id)s AND claim_owner = %(owner)s
                  AND (state = {sending} OR (state = {unknown} AND %(state)s <> {unknown}))
                RETURNING process_ref, extract(epoch FROM now() - due_at)::float8 AS lateness,
                          state, channel,
                          EXISTS (SELECT 1 FROM notification AS w
                                  WHERE w.covered_by = notification.id
                                    AND w.state = {coalesced} AND w.finished_at IS NULL)
                              AS awaited
                """
            ),
            {
                "state": state,
                "error": error,
                "ref": provider_ref,
                "id": notification_id,
                "owner": owner,
            },
        )
        row = _one(self._cursor)
        if row is None:
            return None
        return Finished(
            process_ref=row.process_ref,
            lateness_seconds=row.lateness,
            state=row.state,
            channel=row.channel,
            awaited=row.awaited,
        )

    def recorded(self, notification_id: int, *, owner: str) -> RecordedOutcome | None:
        """The outcome on record for ``owner``'s delivery of this notification, and
        whether recording it completed the process; ``None`` if there is none."""
        self._cursor.execute(
            _sql(
                """
                SELECT n.state, p.state = {completed} AND p.ended_at = n.finished_at AS completed
                FROM notification n JOIN process p ON p.id = n.process_ref
                WHERE n.id = %s AND n.claim_owner = %s AND n.state IN ({recorded})
                """
            ),
            (notification_id, owner),
        )
        row = _one(self._cursor)
        return None if row is None else RecordedOutcome(row.state, completed_process=row.completed)


@dataclass(frozen=True)
class RecordedOutcome:
    """An outcome recorded before (a retried record step answers it again)."""

    state: str
    completed_process: bool


@dataclass(frozen=True)
class ProviderRecord:
    """What is on record for a notification when its provider's status callback arrives."""

    notification_id: int
    state: str
    provider_ref: str | None
    provider_status: str | None


class ProviderStatusRepository:
    """The provider's account of each delivery: the status callbacks' side of a
    notification (a call's, a message's)."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def lock(
        self, *, channel: str, notification_id: int | None, provider_ref: str
    ) -> ProviderRecord | None:
        """The ``channel`` notification a callback is about, locked until the transaction
        ends: by its id when the callback URL names it, else by the provider's reference."""
        by_id = notification_id is not None
        self._cursor.execute(
            _sql(
                """
                SELECT id, state, provider_ref, provider_status FROM notification
                WHERE {key} = %s AND channel = %s FOR UPDATE
                """,
                key="id" if by_id else "provider_ref",
            ),
            (notification_id if by_id else provider_ref, channel),
        )
        row = _one(self._cursor)
        if row is None:
            return None
        return ProviderRecord(row.id, row.state, row.provider_ref, row.provider_status)

    def set_status(self, notification_id: int, report: StatusReport, *, settle: bool) -> None:
        """Record the provider's status, when it was reported and (a call's) duration, and
        bind the notification to the provider's reference; with ``settle``, the
        notification becomes ``sent``."""
        self._cursor.execute(
            _sql(
                """
                UPDATE notification
                SET provider_status = %s, provider_status_at = to_timestamp(%s),
                    call_duration_seconds = coalesce(%s, call_duration_seconds),
                    provider_ref = coalesce(provider_ref, %s),
                    state = CASE WHEN %s THEN {sent} ELSE state END,
                    error = CASE WHEN %s THEN NULL ELSE error END,
                    updated_at = now()
                WHERE id = %s
                """
            ),
            (
                report.status,
                report.reported_at,
                report.duration_seconds,
                report.provider_ref,
                settle,
                settle,
                notification_id,
            ),
        )


class PropertyRepository:
    """The key/value settings of the original (``property`` table)."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def get(self, key: str) -> str | None:
        self._cursor.execute("SELECT property_value FROM property WHERE property_key = %s", (key,))
        row = _one(self._cursor)
        return None if row is None else str(row.property_value)

    def put(self, key: str, value: str) -> None:
        self._cursor.execute(
            """
            INSERT INTO property (property_key, property_value) VALUES (%s, %s)
            ON CONFLICT (property_key) DO UPDATE SET property_value = EXCLUDED.property_value
            """,
            (key, value),
        )


class RequestLog:
    """Every request seen, by SQS message id, with what it did or why it was refused."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def record(self, message: RequestMessage, outcome: RequestOutcome) -> bool:
        """Record the outcome; ``False`` if this message was recorded before (a redelivery)."""
        rejected = outcome.kind == "rejected"
        self._cursor.execute(
            """
            INSERT INTO request_log
                (message_id, group_id, process_id, action, outcome, reason, process_ref, body,
                 rejected_notifications)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (message_id) DO NOTHING
            RETURNING 1
            """,
            (
                _storable(message.message_id),
                _storable(message.group_id),
                outcome.process_id,
                outcome.action,
                outcome.kind,
                outcome.reason,
                outcome.process_ref,
                _storable(message.body) if rejected else None,
                outcome.rejected,
            ),
        )
        return _one(self._cursor) is not None


class RetentionRepository:
    """What has finished and is older than a cutoff: counted, deleted in batches, and the
    tables' sizes (escalator.retention). A process is finished when it ended and none of
    its notifications is still owed (being sent, or waiting for another's outcome)."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def limit_lock_waits(self, milliseconds: int) -> None:
        """A row another transaction holds (a callback recording a status) is waited for
        at most this long in this transaction; the purge tries again next time."""
        self._cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{milliseconds}ms",))

    def count_purgeable(self, *, finished_before: datetime, requests_before: datetime) -> Any:
        """How many processes, notifications and request-log entries a purge would delete."""
        self._cursor.execute(
            _sql(
                """
                WITH finished AS ({finished})
                SELECT (SELECT count(*) FROM finished) AS processes,
                       (SELECT count(*) FROM notification n JOIN finished f
                          ON n.process_ref = f.id) AS notifications,
                       (SELECT count(*) FROM request_log
                         WHERE received_at < %(requests_before)s) AS requests
                """,
                finished=_sql(_FINISHED_PROCESSES, limit="ALL"),
            ),
            {"before": finished_before, "requests_before": requests_before},
        )
        return _one(self._cursor)

    def purge_finished(self, *, before: datetime, limit: int) -> tuple[int, int]:
        """Delete up to ``limit`` finished processes that ended before ``before``, oldest
        first, with their notifications: (processes, notifications) deleted. (Nothing
        else changes a finished process; a provider's callback may hold one of its
        notifications for a moment: ``limit_lock_waits`` bounds that wait.)"""
        self._cursor.execute(
            _sql(
                """
                WITH finished AS ({finished}),
                notifications AS (
                    DELETE FROM notification n USING finished f
                    WHERE n.process_ref = f.id
                    RETURNING n.id
                ),
                processes AS (
                    DELETE FROM process p USING finished f WHERE p.id = f.id RETURNING p.id
                )
                SELECT (SELECT count(*) FROM processes) AS processes,
                       (SELECT count(*) FROM notifications) AS notifications
                """,
                finished=_sql(_FINISHED_PROCESSES, limit="%(limit)s"),
            ),
            {"before": before, "limit": limit},
        )
        row = _one(self._cursor)
        return row.processes, row.notifications

    def purge_requests(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` request-log entries received before ``before``, oldest
        first: how many. (An entry is never changed once written.)"""
        self._cursor.execute(
            """
            WITH old AS (
                SELECT message_id FROM request_log WHERE received_at < %(before)s
                ORDER BY received_at LIMIT %(limit)s
            )
            DELETE FROM request_log r USING old WHERE r.message_id = old.message_id
            """,
            {"before": before, "limit": limit},
        )
        return int(self._cursor.rowcount)

    def sizes(self) -> list[Any]:
        """Each table's rows (estimated), size of its data and of its indexes, in bytes."""
        self._cursor.execute(
            """
            SELECT c.relname AS table, c.reltuples::bigint AS estimated_rows,
                   pg_table_size(c.oid) AS table_bytes, pg_indexes_size(c.oid) AS index_bytes,
                   s.n_dead_tup AS dead_rows, s.last_autovacuum
            FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
            WHERE c.relname IN ('process', 'notification', 'request_log')
            ORDER BY c.relname
            """
        )
        return _all(self._cursor)

    def counts_by_state(self) -> list[Any]:
        """Rows by table and state (the request log by outcome), with the oldest row's
        time: when the process started, the notification was stored, the request came."""
        self._cursor.execute(
            """
            SELECT 'process' AS table, state, count(*) AS rows, min(started_at) AS oldest
              FROM process GROUP BY state
            UNION ALL
            SELECT 'notification', state, count(*), min(created_at) FROM notification
              GROUP BY state
            UNION ALL
            SELECT 'request_log', outcome, count(*), min(received_at) FROM request_log
              GROUP BY outcome
            ORDER BY 1, 2
            """
        )
        return _all(self._cursor)


# Processes that ended before ``%(before)s`` and owe nothing: none of their notifications
# is unfinished (being sent, or coalesced and waiting for its cover's outcome), oldest
# first, at most ``{limit}``.
_FINISHED_PROCESSES = """
    SELECT p.id FROM process p
    WHERE p.state <> {active} AND p.ended_at < %(before)s
      AND NOT EXISTS (
          SELECT FROM notification n WHERE n.process_ref = p.id AND n.finished_at IS NULL)
    ORDER BY p.ended_at LIMIT {limit}
"""


# A notification's due time as the Wait state's TimestampPath reads it (RFC 3339, Z).
_DUE_TEXT = """to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


def _one(cursor: Cursor) -> Any:
    """The next row (its columns by name), or ``None``."""
    return cursor.fetchone()


def _all(cursor: Cursor) -> list[Any]:
    """The remaining rows (their columns by name)."""
    return cursor.fetchall()


def _claimed(rows: Sequence[Any]) -> list[ClaimedNotification]:
    """Rows of (id, channel, due, owner), oldest first."""
    ordered = sorted(rows, key=lambda row: (row.due, row.id))
    return [
        ClaimedNotification(id=row.id, channel=row.channel, due=row.due, owner=row.owner)
        for row in ordered
    ]


def _delivery(row: Any) -> Delivery:
    """A row of (id, process_id, channel, target, due_at in epoch seconds)."""
    return Delivery(
        notification_id=row.id,
        process_id=row.process_id,
        channel=row.channel,
        target=row.target,
        due_at=row.due_at,
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _storable(text: str | None) -> str | None:
    """Text PostgreSQL accepts: NUL characters and lone surrogates escaped, not refused."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
