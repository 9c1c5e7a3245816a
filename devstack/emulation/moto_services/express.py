"""Express executions as AWS runs them and moto does not: capped at five minutes, and at
least once (a second run with the same input, when asked)."""

from __future__ import annotations

import contextlib
import datetime
import random
import threading
from typing import Any

from devstack.polling import NotInTime, wait_until

# An Express execution runs at most five minutes on AWS.
EXPRESS_CAP_SECONDS = 300.0


# How long an execution may take to begin its evaluation (its definition parsed) before
# its cap is given up on (a worker that died never makes its environment).
BEGINNING_SECONDS = 60.0


class ExpressRuns:
    """How the emulation runs Express executions, as AWS does and moto does not: each is
    failed (``TIMED_OUT``) once it has run ``cap_seconds`` (AWS: five minutes; tests scale
    it down), and, with ``rerun_probability``, started a second time with the same input
    (AWS runs an Express execution at least once). ``seed`` makes the draws repeatable;
    ``started``, ``reruns`` and ``timed_out`` count what happened."""

    def __init__(
        self,
        cap_seconds: float = EXPRESS_CAP_SECONDS,
        *,
        rerun_probability: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= rerun_probability <= 1.0:
            raise ValueError(f"a rerun probability is between 0 and 1, not {rerun_probability}")
        self.cap_seconds = cap_seconds
        self.rerun_probability = rerun_probability
        self.started = 0
        self.reruns = 0
        self.timed_out = 0
        # The Express state machines' ARNs (AWS keeps no history of their executions,
        # so the history quota does not apply to them).
        self.machines: set[str] = set()
        self._runs: list[Any] = []
        self._crashed: set[str] = set()
        self._random = random.Random(seed)  # noqa: S311 - faults, not secrets
        self._lock = threading.Lock()

    def count_start(self, *, rerun: bool = False, at_most_once: bool = False) -> bool:
        """Count a start (or its rerun); whether it is to run a second time (never for a
        synchronous start: AWS runs it at most once)."""
        with self._lock:
            self.started += 1
            if rerun:
                self.reruns += 1
                return False
            if at_most_once:
                return False
            return self._random.random() < self.rerun_probability

    def count_timeout(self) -> None:
        with self._lock:
            self.timed_out += 1

    # What follows is the harness's bookkeeping of the Express executions it started
    # (AWS lists and describes none of them): when they end, and, for a crash, stopping
    # them. What they did is in their log group, or in the tick's output.

    def register(self, execution: Any) -> None:
        """Keep an Express execution just started (moto's, with its status); one started
        by a crashed execution (``stop_running(started_by=...)``) dies as it starts."""
        with self._lock:
            self._runs.append(execution)
            given = str(execution.execution_input)
            dead = any(owner in given for owner in self._crashed)
        if dead:
            _stop_express(execution)

    def running(self) -> list[str]:
        """The ARNs of the Express executions still running, oldest first."""
        with self._lock:
            runs = list(self._runs)
        return [run.execution_arn for run in runs if run.status == "RUNNING"]

    def stop_running(self, *, started_by: str | None = None) -> list[str]:
        """Stop every Express execution still running, as if its process had died (AWS
        has no API for it: StopExecution refuses an Express execution); their ARNs.
        ``started_by``: an execution that died with them, whose windows (those whose
        input names it, as a tick's claims do) die as they start too, should its start
        still be under way (a stopped tick's StartSyncExecution is abandoned, not undone)."""
        with self._lock:
            if started_by is not None:
                self._crashed.add(started_by)
            runs = [run for run in self._runs if run.status == "RUNNING"]
        for run in runs:
            _stop_express(run)
        return [run.execution_arn for run in runs]


def _stop_express(execution: Any) -> None:
    """Stop a running moto execution (as StopExecution did, through its worker)."""

    # (a worker that is only starting has no program to stop yet: moto ignores a stop
    # until its program runs, then runs it. One that never begins is stopped all the
    # same: it has nothing to run.)
    def begun() -> bool:
        environment = getattr(execution.exec_worker, "env", None)
        return environment is not None and environment.program_state() is not None

    with contextlib.suppress(NotInTime):
        wait_until(
            lambda: begun() or execution.status != "RUNNING",
            timeout=BEGINNING_SECONDS,
            interval=0.01,
            what="the execution's program",
        )
    execution.stop(stop_date=datetime.datetime.now(datetime.UTC), error=None, cause=None)
