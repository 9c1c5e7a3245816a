"""The emulated schedule: once in each period, at a random moment within it (seeded,
so a run can be replayed), or on the period's start when exact."""

from __future__ import annotations

import itertools
import threading

import pytest

from devstack.emulation.schedule import Schedule


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


class RefusedStarts:
    """A tick whose every start Step Functions refuses (its schedule's role may not)."""

    def __init__(self) -> None:
        self.tries = 0

    def start(self, execution_input: dict[str, object]) -> str:
        from botocore.exceptions import ClientError

        self.tries += 1
        error = {"Code": "AccessDeniedException", "Message": "not authorized to perform"}
        raise ClientError({"Error": error}, "StartExecution")


def test_a_tick_the_schedule_may_not_start_is_said_and_the_next_one_fires(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from devstack.local.stack import _fire

    # GIVEN the local stack's schedule, whose role may not start the tick
    machine = RefusedStarts()
    stop = threading.Event()
    schedule = Schedule(0.01, exact=True)

    def fire() -> None:
        _fire(machine, 1)
        if machine.tries == 2:
            stop.set()

    # WHEN it fires twice, THEN each refusal is said and the schedule goes on, as
    # EventBridge Scheduler drops a failed invocation (no retries, no dead-letter queue)
    assert schedule.run(fire, stop) == 2
    said = capsys.readouterr().err.splitlines()
    assert (
        said
        == [
            "escalator local: the schedule could not start the tick: An error occurred"
            " (AccessDeniedException) when calling the StartExecution operation: not authorized"
            " to perform"
        ]
        * 2
    )
