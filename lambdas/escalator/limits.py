"""The limits of the request contract. A leaf: it imports nothing of Escalator's."""

from __future__ import annotations

MAX_BODY_BYTES = 64 * 1024
# Producers use the process id as the SQS MessageGroupId, which is at most 128 characters.
MAX_PROCESS_ID_LENGTH = 128
MAX_NOTIFICATIONS = 100
MAX_SCHEDULE_AHEAD_SECONDS = 30 * 24 * 3600
# A notification this late is not delivered: expired by the activator, rejected at ingest.
MAX_LATENESS_SECONDS = 900
# What a notification accepted at the limit may take from its acceptance to the confirm
# step (a delivery window started, its Map entered, a retry): the confirm step expires
# a notification only this much later than the limit, so none is accepted and expired.
EXPIRY_SLACK_SECONDS = 60
# The per-recipient guard's default window: one delivery per target and minute across
# processes (a producer's bug starting many processes for one number calls it once).
RECIPIENT_GUARD_SECONDS = 60
# EventBridge Scheduler runs a rate(N) schedule at some moment within each period, so
# two ticks may be almost two periods apart: a tick claims two periods ahead.
SCHEDULE_PERIODS_AHEAD = 2
# What a tick takes from its start to its claim, at most, on a bad day.
CLAIM_MARGIN_SECONDS = 5


def claim_lookahead(period_seconds: int) -> int:
    """How far ahead a tick of a schedule of this period claims."""
    return SCHEDULE_PERIODS_AHEAD * period_seconds


def near_due_horizon(lookahead_seconds: int) -> int:
    """A notification due sooner than this after it arrives may fall due before any tick
    claims it: the initiator starts its delivery at once."""
    return lookahead_seconds + CLAIM_MARGIN_SECONDS
