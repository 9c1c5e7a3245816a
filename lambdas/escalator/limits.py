"""The limits of the request contract. A leaf: it imports nothing of Escalator's."""

from __future__ import annotations

MAX_BODY_BYTES = 64 * 1024
# Producers use the process id as the SQS MessageGroupId, which is at most 128 characters.
MAX_PROCESS_ID_LENGTH = 128
MAX_NOTIFICATIONS = 100
MAX_SCHEDULE_AHEAD_SECONDS = 30 * 24 * 3600
# A notification due longer ago than this at arrival is rejected at ingest; one accepted
# is delivered, expired only past ``expiry_seconds`` (later than any accepted one needs).
MAX_LATENESS_SECONDS = 900
# What a notification may take from the moment a delivery window holds it to its confirm
# step (the window started, its Map entered, a retry of the confirm).
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


def expiry_seconds(max_lateness: int, lookahead: int) -> int:
    """How late a notification is when it expires: the one rule of the tick's housekeeping
    (pending ones) and of the confirm step (claimed ones), so neither expires one the other
    would still deliver, and none accepted within ``max_lateness`` is expired unsent.

    An arrival accepted at the limit whose own delivery window did not start goes back to
    the ticks: the next one comes within the ``lookahead`` (two schedule periods), claims
    within the claim margin, and its window reaches the confirm step within the slack."""
    return max_lateness + lookahead + CLAIM_MARGIN_SECONDS + EXPIRY_SLACK_SECONDS


def near_due_horizon(lookahead_seconds: int) -> int:
    """A notification due sooner than this after it arrives may fall due before any tick
    claims it: the initiator starts its delivery at once."""
    return lookahead_seconds + CLAIM_MARGIN_SECONDS
