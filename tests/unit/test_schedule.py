"""The emulated schedule: once in each period, at a random moment within it (seeded,
so a run can be replayed), or on the period's start when exact."""

from __future__ import annotations

import itertools
import threading

import pytest

from devstack.schedule import Schedule


def test_each_tick_fires_once_within_its_own_period() -> None:
    schedule = Schedule(60, seed=7, start=1_000.0)
    moments = [schedule.moment(index) for index in range(200)]
    for index, moment in enumerate(moments):
        assert 1_000.0 + index * 60 <= moment < 1_000.0 + (index + 1) * 60
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    # as on AWS: two ticks may be almost two periods apart, or almost together
    assert max(gaps) > 100
    assert min(gaps) < 20


def test_a_seed_replays_the_same_moments_and_exact_fires_on_the_period() -> None:
    first = [Schedule(60, seed=3, start=0.0).moment(index) for index in range(5)]
    again = Schedule(60, seed=3, start=0.0)
    assert [again.moment(index) for index in (0, 1, 2, 3, 4)] == first
    # (asked out of order, a moment is still its period's)
    shuffled = Schedule(60, seed=3, start=0.0)
    assert [shuffled.moment(index) for index in (4, 0, 2)] == [first[4], first[0], first[2]]
    exact = Schedule(60, exact=True, start=0.0)
    assert [exact.moment(index) for index in range(3)] == [0.0, 60.0, 120.0]


def test_run_ticks_until_stopped() -> None:
    schedule = Schedule(0.05, seed=1)
    stop = threading.Event()
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            stop.set()

    assert schedule.run(tick, stop) == 3
    assert len(schedule.fired) == 3
    assert schedule.fired == sorted(schedule.fired)


def test_a_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Schedule(0)
