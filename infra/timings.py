"""What the claim grace and the sending lease must be at least: one rule, from the
schedule's lookahead, the functions' timeouts and the retry budgets the delivery window's
tasks are built with, for the stack on AWS (``infra.functions``) and for the local stack
(``devstack.local.stack.local_defaults``).

- The **sending lease** turns a notification still ``sending`` into ``unknown`` (never
  sent again). It must outlive the window that moved it to sending: while the window
  lives, its confirm step may still be retried (its answer was lost) and hand the
  delivery to the notifier. A lease that lapses first makes that retry find the
  notification ``unknown``: never sent, yet recorded as if it might have been. A window
  ends at its worst case (every attempt of every step running out of time, every retry
  used, throttles and lost answers included) or at the Express cap, whichever comes
  first; a step invocation in flight then may still run out its timeout.
- The **claim grace** returns a claim not confirmed this long after its due time to the
  ticks. It must outlive the window's confirm step when the database is slow or failing
  (each attempt running out of time, its ``DatabaseError`` retries: the window's worst
  case counts it so, ``infra.state_machine.window_worst_case_seconds``). A claim that
  lapses during a longer run of throttles is claimed again by a later tick and the
  window's confirm finds it gone: later, never twice, never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from escalator.config import DeliveryConfig
from infra.settings import THROTTLE_RETRY

# (Plain numbers, no CDK: the local stack reads them at every start.)
# Attempts count every try, the first included; retries only the tries after the first,
# as a Retry's MaxAttempts counts them in Step Functions.
# A notifier task's attempts: its first, and its retries of what never left.
NOTIFIER_ATTEMPTS = 3
NOTIFIER_RETRIES = NOTIFIER_ATTEMPTS - 1
# How a database step retries a lost answer, a timeout (each delay at most this long).
DATABASE_SERVICE_RETRIES = 9
RETRY_MAX_DELAY_SECONDS = 8
# How it retries a DatabaseError: jittered delays from 2 s, doubling, at most this long.
DATABASE_ERROR_RETRIES = 3
DATABASE_ERROR_FIRST_DELAY_SECONDS = 2
DATABASE_ERROR_MAX_DELAY_SECONDS = 8
# A notifier retries what provably never left: delays from 1 s, doubling.
NOTIFIER_FIRST_DELAY_SECONDS = 1
# The confirm step retries a DatabaseError fewer times: a notification not confirmed is
# released after the claim grace and claimed again, nothing lost. The record step holds
# a provider's receipt: it tries longest, within the window's five minutes.
CONFIRM_DATABASE_RETRIES = 2
RECORD_DATABASE_RETRIES = 4
# An Express execution runs at most five minutes.
EXPRESS_CAP_SECONDS = 300


@dataclass(frozen=True)
class Retrier:
    """One ``Retry`` of a task, as the window's tasks are built: ``retries`` tries after
    the first, the first retry after ``interval`` seconds, each delay doubled, at most
    ``max_delay`` (jitter only shortens them)."""

    retries: int
    interval: int
    max_delay: int | None = None

    def longest_delays(self) -> int:
        delays = [self.interval << retry for retry in range(self.retries)]
        return sum(min(delay, self.max_delay or delay) for delay in delays)


# The retriers of the window's tasks (infra.state_machine.database_step, _notifier and
# throttle_retry build them from the same constants).
LOST_ANSWER = Retrier(DATABASE_SERVICE_RETRIES, 1, RETRY_MAX_DELAY_SECONDS)
THROTTLED = Retrier(
    THROTTLE_RETRY.retries, THROTTLE_RETRY.interval_seconds, THROTTLE_RETRY.max_delay_seconds
)
CONFIRM_DATABASE_ERROR = Retrier(
    CONFIRM_DATABASE_RETRIES, DATABASE_ERROR_FIRST_DELAY_SECONDS, DATABASE_ERROR_MAX_DELAY_SECONDS
)
RECORD_DATABASE_ERROR = Retrier(
    RECORD_DATABASE_RETRIES, DATABASE_ERROR_FIRST_DELAY_SECONDS, DATABASE_ERROR_MAX_DELAY_SECONDS
)
NOTIFIER_TRANSIENT = Retrier(NOTIFIER_RETRIES, NOTIFIER_FIRST_DELAY_SECONDS)
# Each of the window's tasks, with its retriers.
CONFIRM_RETRIERS = (LOST_ANSWER, CONFIRM_DATABASE_ERROR, THROTTLED)
NOTIFIER_RETRIERS = (NOTIFIER_TRANSIENT, THROTTLED)
RECORD_RETRIERS = (LOST_ANSWER, RECORD_DATABASE_ERROR, THROTTLED)


def task_longest_seconds(timeout: int, retriers: Sequence[Retrier]) -> int:
    """A task's longest run: its first attempt and every retry of every retrier, each
    running out its ``timeout``, with the longest delays between them."""
    attempts = 1 + sum(retrier.retries for retrier in retriers)
    return attempts * timeout + sum(retrier.longest_delays() for retrier in retriers)


def window_longest_seconds(
    *, lookahead_seconds: int, database_step_timeout: int, notifier_timeout: int
) -> int:
    """How long a delivery window would run, left to itself, at worst: it waits for the
    last notification it holds (due at the end of the lookahead), then confirms it, calls
    its notifier and records it, each task using up every retry it has."""
    confirm = task_longest_seconds(database_step_timeout, CONFIRM_RETRIERS)
    notifier = task_longest_seconds(notifier_timeout, NOTIFIER_RETRIERS)
    record = task_longest_seconds(database_step_timeout, RECORD_RETRIERS)
    return lookahead_seconds + confirm + notifier + record


@dataclass(frozen=True)
class Leases:
    """How long a claim outlives its due time unconfirmed, and a notification stays
    ``sending`` without an outcome (the delivery settings of the same names)."""

    claim_grace_seconds: int
    sending_lease_seconds: int

    def at_least(self, minimum: Leases) -> Leases:
        """These leases, each raised to ``minimum``'s where it is shorter."""
        return Leases(
            max(self.claim_grace_seconds, minimum.claim_grace_seconds),
            max(self.sending_lease_seconds, minimum.sending_lease_seconds),
        )

    def keeps(self, minimum: Leases) -> bool:
        """Whether each lease is at least ``minimum``'s."""
        return self == self.at_least(minimum)


def minimum_leases(
    *,
    lookahead_seconds: int,
    database_step_timeout: int,
    notifier_timeout: int,
    window_timeout: int = EXPRESS_CAP_SECONDS,
) -> Leases:
    """The shortest claim grace and sending lease that keep the rules above, for a
    schedule claiming ``lookahead_seconds`` ahead, these function timeouts, and a window
    that Step Functions ends after ``window_timeout`` seconds."""
    longest = window_longest_seconds(
        lookahead_seconds=lookahead_seconds,
        database_step_timeout=database_step_timeout,
        notifier_timeout=notifier_timeout,
    )
    window_lifetime = min(longest, window_timeout) + database_step_timeout
    confirm = task_longest_seconds(database_step_timeout, (CONFIRM_DATABASE_ERROR,))
    return Leases(claim_grace_seconds=confirm, sending_lease_seconds=window_lifetime)


def default_leases() -> Leases:
    """The delivery settings' own defaults (``escalator.config.DeliveryConfig``)."""
    defaults = {item.name: item.default for item in fields(DeliveryConfig)}
    return Leases(
        claim_grace_seconds=int(str(defaults["claim_grace_seconds"])),
        sending_lease_seconds=int(str(defaults["sending_lease_seconds"])),
    )
