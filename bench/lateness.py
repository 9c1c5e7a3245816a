"""Lateness: how late (or early) notifications are published after their due time, on
the synthesized state machines (moto interpreter, in-process handlers, a loopback PubNub
peer), ticked by a 10 s schedule that fires at a random moment within each period, as
EventBridge Scheduler does (``devstack.emulation.schedule``, seeded: ``BENCH_SCHEDULE_SEED``).

Two modes, one after the other on one pipeline:

- pre-scheduled: 200 notifications due over two minutes, all submitted first, the
  initiator's near-due delivery off: only the ticks deliver. Baseline: the original's
  strategy (deliver what is due at each tick, no wait) on the same ticks of the same
  run. Target: p99 of sent - due at most 0.5 s, none early.
- near-due: 200 notifications sent 1 to 50 s before their due time (uniform, seeded:
  ``BENCH_ARRIVAL_SEED``) over about 90 s, the initiator's near-due delivery on, the
  ticks running too. Baseline: the design without it on the same arrivals and ticks,
  each delivered by the first tick after its arrival that looks far enough ahead to
  claim it, at its due time if that tick came before it. Target: p99 at most 2 s, none
  early.

Each notification must be published exactly once.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any

from common import database, percentile, progress, quiet_logs, report, submit

from devstack.emulation.schedule import Schedule
from devstack.local.pipeline import Pipeline, running_pipeline
from devstack.peers.postgres import query
from escalator.limits import claim_lookahead, near_due_horizon

COUNT = int(os.environ.get("BENCH_LATENESS_COUNT", "200"))
SPREAD = int(os.environ.get("BENCH_LATENESS_SPREAD", "120"))
NEAR_DUE_SPREAD = int(os.environ.get("BENCH_NEAR_DUE_SPREAD", "90"))
SCHEDULE_SEED = int(os.environ.get("BENCH_SCHEDULE_SEED", "1919"))
ARRIVAL_SEED = int(os.environ.get("BENCH_ARRIVAL_SEED", "1950"))
TICK = 10
LOOKAHEAD = claim_lookahead(TICK)
# How long before its due time a near-due notification is sent: uniform in this range.
LEAD = (1.0, 50.0)
PRE_SCHEDULED_TARGET = 0.5
NEAR_DUE_TARGET = 2.0


@dataclass
class Outcome:
    """One mode's run: what was due, what was published, and how the baseline fares."""

    mode: str
    dues: dict[str, float]  # channel -> due time
    lateness: list[float]  # published - due, one per publication
    baseline: list[float]  # the baseline's lateness, one per notification
    published: Counter[str]  # channel -> how many times published
    ticks: int
    note: str
    # How many notifications windows the initiator started delivered.
    by_arrival: int

    @property
    def p99(self) -> float:
        return percentile(self.lateness, 0.99)

    @property
    def baseline_p99(self) -> float:
        return percentile(self.baseline, 0.99)

    @property
    def early(self) -> int:
        return sum(1 for late in self.lateness if late < 0)

    @property
    def exactly_once(self) -> bool:
        return set(self.published) == set(self.dues) and set(self.published.values()) == {1}

    def met(self, target: float) -> bool:
        return self.p99 <= target and self.early == 0 and self.exactly_once

    def rows(self) -> list[tuple[str, str]]:
        twice = sum(1 for n in self.published.values() if n > 1)
        lateness = self.lateness or [math.nan]
        return [
            (f"{self.mode}: arrivals", self.note),
            (
                f"{self.mode}: delivered",
                f"{len(self.published)} of {len(self.dues)} once ({twice} more than once, "
                f"{sum(self.published.values())} publications); {self.ticks} ticks; "
                f"{self.by_arrival} delivered by windows the initiator started",
            ),
            (
                f"{self.mode}: sent - due, p50 / p99 / max",
                f"{percentile(lateness, 0.5):.2f} / {self.p99:.2f} / {max(lateness):.2f} s",
            ),
            (f"{self.mode}: delivered early", str(self.early)),
            (
                f"{self.mode}: baseline p50 / p99 / max",
                f"{percentile(self.baseline, 0.5):.2f} / {self.baseline_p99:.2f} / "
                f"{max(self.baseline, default=math.nan):.2f} s",
            ),
        ]


def start(channel: str, due: float) -> dict[str, Any]:
    return {
        "process-id": f"restaurant-{channel}",
        "action": "start",
        "notifications": [{"channel": "pubnub", "at": int(due), "pubnub-channel": channel}],
    }


@contextmanager
def ticking(running: Pipeline, schedule: Schedule) -> Iterator[None]:
    """Ticks started as ``schedule`` fires, in a thread, until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(
        target=schedule.run,
        args=(lambda: running.machine.start({"period_seconds": TICK}), stop),
        name="schedule",
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def first_tick(ticks: Sequence[float], after: float, due: float) -> float | None:
    """The first tick at or after ``after`` whose claim reaches ``due``."""
    return next((t for t in ticks if t >= after and due - t <= LOOKAHEAD), None)


def wait_for_delivery(
    running: Pipeline, first: int, channels: set[str], schedule: Schedule, covered: float
) -> None:
    """Until every channel is published and a tick fired at or after ``covered`` (the
    baseline needs it), or the deadline."""
    deadline = time.time() + 4 * TICK + max(0.0, covered - time.time())
    last_shown = 0.0
    while time.time() < deadline:
        done = {p.channel for p in running.peers.pubnub.publications[first:]} & channels
        if len(done) == len(channels) and schedule.fired and schedule.fired[-1] >= covered:
            return
        if time.time() - last_shown >= TICK:
            last_shown = time.time()
            progress(f"{len(done)}/{len(channels)} delivered, {len(schedule.fired)} ticks")
        time.sleep(0.25)
    progress("deadline reached")


def settle(running: Pipeline) -> None:
    """Let the ticks and windows still running end (nothing is left to deliver)."""
    running.machine.settle(timeout=60)
    running.machine.settle_windows(timeout=60)


def arrival_windows(running: Pipeline, channels: Collection[str]) -> int:
    """How many of these notifications windows the initiator started (not a tick)
    delivered: their claim's owner, as the database keeps it (AWS describes no Express
    execution, and the window's log holds no execution data)."""
    ((count,),) = query(
        running.database_url,
        "SELECT count(*) FROM notification WHERE target = ANY(%s) AND claim_owner LIKE %s",
        (list(channels), "arrival-%"),
    )
    return int(count)


def published(
    running: Pipeline, first: int, dues: dict[str, float]
) -> tuple[list[float], Counter[str]]:
    publications = [p for p in running.peers.pubnub.publications[first:] if p.channel in dues]
    lateness = [p.received_at - dues[p.channel] for p in publications]
    return lateness, Counter(p.channel for p in publications)


def pre_scheduled(running: Pipeline) -> Outcome:
    """Everything submitted first; only the ticks deliver."""
    first = len(running.peers.pubnub.publications)
    begins = time.time() + 2  # (after the submission)
    schedule = Schedule(TICK, seed=SCHEDULE_SEED, start=begins)
    # The first due time leaves the first tick (anywhere in its period) time to claim it.
    first_due = int(begins) + TICK + 5
    dues = {f"pre-{n}": float(first_due + (SPREAD * n) // COUNT) for n in range(COUNT)}
    submit([start(channel, due) for channel, due in dues.items()])
    progress(
        f"pre-scheduled: {COUNT} notifications due over {SPREAD} s; schedule {schedule.describe()}"
    )
    with ticking(running, schedule):
        wait_for_delivery(running, first, set(dues), schedule, covered=max(dues.values()))
    settle(running)
    lateness, counts = published(running, first, dues)
    baseline = [
        min(t for t in schedule.fired if t >= due) - due
        for due in dues.values()
        if any(t >= due for t in schedule.fired)
    ]
    note = f"{COUNT} due over {SPREAD} s, all submitted first (near-due delivery off)"
    handed = arrival_windows(running, dues)
    fired = len(schedule.fired)
    return Outcome("pre-scheduled", dues, lateness, baseline, counts, fired, note, handed)


def near_due(running: Pipeline) -> Outcome:
    """Each notification sent 1 to 50 s before it is due, the initiator's near-due
    delivery on, the ticks running too."""
    running.start_near_due()
    first = len(running.peers.pubnub.publications)
    draw = random.Random(ARRIVAL_SEED)  # noqa: S311 - a workload, not a secret
    begins = time.time() + 2
    planned: list[tuple[float, str, float]] = []  # (arrival, channel, due)
    for n in range(COUNT):
        lead = draw.uniform(*LEAD)
        due_at = math.ceil(begins + NEAR_DUE_SPREAD * n / COUNT + lead)
        planned.append((due_at - lead, f"near-{n}", float(due_at)))
    planned.sort()
    dues = {channel: due for _, channel, due in planned}
    arrivals: dict[str, float] = {}
    schedule = Schedule(TICK, seed=SCHEDULE_SEED, start=begins)
    progress(
        f"near-due: {COUNT} notifications sent {LEAD[0]:g} to {LEAD[1]:g} s before due over "
        f"{NEAR_DUE_SPREAD} s (arrival seed {ARRIVAL_SEED}; claimed at ingest when due within "
        f"{near_due_horizon(LOOKAHEAD)} s); schedule {schedule.describe()}"
    )
    with ticking(running, schedule):
        for sent, (arrival, channel, due) in enumerate(planned):
            time.sleep(max(0.0, arrival - time.time()))
            arrivals[channel] = time.time()
            submit([start(channel, due)])
            if sent % 50 == 49:
                progress(f"{sent + 1}/{COUNT} sent, {len(schedule.fired)} ticks")
        # The baseline needs a tick after the last arrival that reaches its due time.
        covered = max(max(arrivals.values()), max(dues.values()) - LOOKAHEAD)
        wait_for_delivery(running, first, set(dues), schedule, covered=covered)
    settle(running)
    lateness, counts = published(running, first, dues)
    baseline = []
    for channel, due in dues.items():
        tick = first_tick(schedule.fired, arrivals[channel], due)
        if tick is not None:
            baseline.append(max(0.0, tick - due))
    lag = max(arrivals[channel] - arrival for arrival, channel, _ in planned)
    leads = [dues[channel] - arrivals[channel] for channel in dues]
    within = sum(1 for lead in leads if lead < near_due_horizon(LOOKAHEAD))
    note = (
        f"{COUNT} sent {min(leads):.1f} to {max(leads):.1f} s before due "
        f"({within} within the near-due horizon); feeder at most {lag:.2f} s behind"
    )
    handed = arrival_windows(running, dues)
    fired = len(schedule.fired)
    return Outcome("near-due", dues, lateness, baseline, counts, fired, note, handed)


def main() -> None:
    quiet_logs()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    progress(f"schedule seed {SCHEDULE_SEED}, arrival seed {ARRIVAL_SEED}")
    began = time.time()
    # (Powertools prints a metric set when it reaches 100 values, disabled or not: off
    # stdout, whose last line must be the report's)
    with (
        database() as dsn,
        running_pipeline(dsn, {"LOOKAHEAD_SECONDS": str(LOOKAHEAD)}) as running,
        open(os.devnull, "w") as devnull,
        redirect_stdout(devnull),
    ):
        progress(f"pipeline ready in {time.time() - began:.0f} s")
        pre = pre_scheduled(running)
        progress(f"pre-scheduled done at {time.time() - began:.0f} s")
        near = near_due(running)
        progress(f"near-due done at {time.time() - began:.0f} s")
    pre_met, near_met = pre.met(PRE_SCHEDULED_TARGET), near.met(NEAR_DUE_TARGET)
    report(
        "lateness",
        rows=[
            (
                "schedule",
                f"every {TICK} s, jittered (seed {SCHEDULE_SEED}); claims {LOOKAHEAD} s ahead",
            ),
            *pre.rows(),
            (
                "pre-scheduled: target",
                f"p99 <= {PRE_SCHEDULED_TARGET} s, none early: {'met' if pre_met else 'NOT met'}",
            ),
            *near.rows(),
            (
                "near-due: target",
                f"p99 <= {NEAR_DUE_TARGET} s, none early: {'met' if near_met else 'NOT met'}",
            ),
        ],
        value=pre.p99,
        unit="s (p99 of sent - due, pre-scheduled)",
        baseline=pre.baseline_p99,
        target=(
            f"pre-scheduled p99 <= {PRE_SCHEDULED_TARGET} s and near-due p99 <= "
            f"{NEAR_DUE_TARGET} s, none early, each exactly once"
        ),
        met=pre_met and near_met,
        extra={
            "near_due_p99": round(near.p99, 4),
            "near_due_baseline_p99": round(near.baseline_p99, 4),
            "pre_scheduled_met": pre_met,
            "near_due_met": near_met,
            "early": pre.early,
            "near_due_early": near.early,
            "delivered": len(pre.published),
            "near_due_delivered": len(near.published),
            "exactly_once": pre.exactly_once and near.exactly_once,
            "schedule_seed": SCHEDULE_SEED,
            "arrival_seed": ARRIVAL_SEED,
        },
    )


if __name__ == "__main__":
    main()
