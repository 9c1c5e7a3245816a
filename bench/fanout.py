"""Fan-out: 1,000 notifications due in the same second, a loopback peer taking 200 ms per
request, the Map's MaxConcurrency at 40: all delivered, exactly once each. Also reports
the peak number of database connections (pg_stat_activity), which must stay within the
cap (30).

The baseline is the emulator's floor, measured in the same run: the same tick, Map and
hand-overs over another 1,000 notifications claimed by the real activator, with the
Confirm, notifier and Record tasks answered by no-op handlers (the notifier's sleeping the
peer's 200 ms) under the same reserved concurrency. Everything the pipeline shares with
that floor is moto's interpreter and the in-process Lambda emulation, on one Python
process; what it adds is Escalator's. Target: at most 2 x the floor. The ideal on AWS,
1000 x 0.2 / 40 = 5 s, is printed beside it: locally no run comes near it
(docs/performance.md)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from common import database, pipeline, progress, quiet_logs, report, submit

COUNT = int(os.environ.get("BENCH_FANOUT_COUNT", "1000"))
DELAY = 0.2
CONCURRENCY = 40
CAP = 30
# (Escalator's tasks may take as much of the emulator as the emulated Map itself: a guard
# against regressions, met narrowly today; docs/performance.md)
FLOOR_TARGET = 2.0


def starts(prefix: str, due: int) -> list[dict[str, Any]]:
    return [
        {
            "process-id": f"{prefix}-{p}",
            "action": "start",
            "notifications": [
                {"channel": "pubnub", "at": due, "pubnub-channel": f"{prefix}-{p}-{n}"}
                for n in range(100)
            ],
        }
        for p in range(COUNT // 100)
    ]


class NoOpTasks:
    """The Map's Lambda tasks answered without Escalator: confirm says deliver, the
    notifier sleeps as long as the peer takes, record says sent. When each notifier
    was called is kept (as the peer keeps when each request arrived)."""

    def __init__(self) -> None:
        self.answered: list[float] = []
        self._lock = threading.Lock()

    def install(self, lambdas: Any, functions: dict[str, str]) -> None:
        for logical_id, name in functions.items():
            if logical_id.startswith("FunctionsConfirm"):
                lambdas.overrides[name] = self.confirm
            elif logical_id.startswith("FunctionsRecord"):
                lambdas.overrides[name] = self.record
            elif logical_id.startswith("FunctionsNotifier"):
                lambdas.overrides[name] = self.notify

    @staticmethod
    def confirm(event: dict[str, Any], context: Any) -> dict[str, Any]:
        delivery = {
            "notification_id": event["notification_id"],
            "process_id": "floor",
            "channel": "pubnub",
            "target": "floor",
            "due_at": 0,
            "owner": event["execution"],
        }
        return {"deliver": True, "delivery": delivery}

    def notify(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self._lock:  # (when the peer would have received it)
            self.answered.append(time.time())
        time.sleep(DELAY)
        return {"provider_ref": "floor", "detail": {}}

    @staticmethod
    def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"notification_id": event["notification_id"], "outcome": "sent"}


def main() -> None:
    from devstack.peers.postgres import ConnectionSampler

    quiet_logs()
    ideal = COUNT * DELAY / CONCURRENCY
    with database() as dsn, pipeline(dsn) as (machine, peers, lambdas):
        peers.pubnub.delay = DELAY
        due = int(time.time()) + 8
        submit(starts("restaurant", due))
        progress(f"{COUNT} notifications due at +8 s; one execution, handing over")
        cpu = time.process_time()
        with ConnectionSampler(dsn) as connections:
            machine.start({"period_seconds": 60})
            # the first execution and those it hands over to, one claimed batch each
            executions = machine.settle(timeout=900)
        cpu = time.process_time() - cpu
        publications = list(peers.pubnub.publications)
        peak_in_flight = peers.pubnub.in_flight.peak
        in_handlers = dict(lambdas.handler_seconds)
        throttles = dict(lambdas.throttles)

        floor_due = int(time.time()) + 8
        submit(starts("floor", floor_due))
        progress(f"the emulator's floor: {COUNT} more, the Map's tasks no-ops")
        tasks = NoOpTasks()
        tasks.install(lambdas, machine.functions)
        floor_cpu = time.process_time()
        machine.start({"period_seconds": 60})
        floor_executions = machine.settle(timeout=900)
        floor_cpu = time.process_time() - floor_cpu
        floor_throttles = sum(lambdas.throttles.values()) - sum(throttles.values())
    channels = [p.channel for p in publications]
    last = max(p.received_at for p in publications) if publications else float("nan")
    elapsed = last - due
    floor = (max(tasks.answered) if tasks.answered else float("nan")) - floor_due
    once = len(channels) == COUNT and len(set(channels)) == COUNT
    report(
        "fanout",
        rows=[
            (
                "executions (one per claimed batch)",
                ", ".join(sorted({e["status"] for e in executions})) + f" ({len(executions)})",
            ),
            ("delivered / unique", f"{len(channels)} / {len(set(channels))} of {COUNT}"),
            ("due -> last delivered", f"{elapsed:.1f} s"),
            (
                "the emulator's floor: due -> last no-op notifier called",
                f"{floor:.1f} s ({len(tasks.answered)} answered, "
                f"{len(floor_executions) - len(executions)} executions, "
                f"{floor_throttles} throttled)",
            ),
            ("ratio to the floor", f"{elapsed / floor:.2f} (target <= {FLOOR_TARGET})"),
            ("ideal on AWS (count x delay / concurrency)", f"{ideal:.1f} s"),
            (
                "process CPU, pipeline / floor",
                f"{cpu:.1f} s / {floor_cpu:.1f} s (both runs' wall in this one process)",
            ),
            (
                "peak requests in flight at the peer",
                f"{peak_in_flight} (MaxConcurrency {CONCURRENCY})",
            ),
            ("peak database connections", f"{connections.peak} (cap {CAP})"),
            (
                "throttled invocations (all reserved sandboxes busy), retried",
                ", ".join(f"{name[9:17]} {count}" for name, count in throttles.items()) or "none",
            ),
            (
                "time inside Escalator's handlers",
                ", ".join(f"{name[9:17]} {seconds:.1f} s" for name, seconds in in_handlers.items()),
            ),
        ],
        value=elapsed,
        unit="s",
        baseline=floor,
        target=(
            f"<= {FLOOR_TARGET} x the emulator's floor (the same Map, no-op tasks, same run),"
            " exactly once each; connections <= cap"
        ),
        met=elapsed <= FLOOR_TARGET * floor and once and connections.peak <= CAP,
        extra={
            "peak_connections": connections.peak,
            "exactly_once": once,
            "throttles": sum(throttles.values()),
            "ideal": ideal,
            "ratio_to_ideal": round(elapsed / ideal, 3),
            "cpu_seconds": round(cpu, 1),
            "floor_cpu_seconds": round(floor_cpu, 1),
        },
    )


if __name__ == "__main__":
    main()
