"""Fan-out: 1,000 notifications due in the same second, a loopback peer taking 200 ms per
request, the Map's MaxConcurrency at 40. Target: all delivered, exactly once each, within
twice the ideal 1000 x 0.2 / 40 = 5 s. Also reports the peak number of database
connections (pg_stat_activity), which must stay within the cap (30)."""

from __future__ import annotations

import os
import time

from common import database, pipeline, progress, quiet_logs, report, submit

COUNT = int(os.environ.get("BENCH_FANOUT_COUNT", "1000"))
DELAY = 0.2
CONCURRENCY = 40
CAP = 30


def main() -> None:
    from devstack.peers.postgres import ConnectionSampler

    quiet_logs()
    ideal = COUNT * DELAY / CONCURRENCY
    with database() as dsn, pipeline(dsn) as (machine, peers, lambdas):
        peers.pubnub.delay = DELAY
        due = int(time.time()) + 8
        submit(
            [
                {
                    "process-id": f"restaurant-{p}",
                    "action": "start",
                    "notifications": [
                        {"channel": "pubnub", "at": due, "pubnub-channel": f"ch-{p}-{n}"}
                        for n in range(100)
                    ],
                }
                for p in range(COUNT // 100)
            ]
        )
        progress(f"{COUNT} notifications due at +8 s; one execution, handing over")
        with ConnectionSampler(dsn) as connections:
            machine.start({"period_seconds": 60})
            # the first execution and those it hands over to, one claimed batch each
            executions = machine.settle(timeout=900)
        publications = list(peers.pubnub.publications)
        peak_in_flight = peers.pubnub.in_flight.peak
        in_handlers = dict(lambdas.handler_seconds)
        throttles = dict(lambdas.throttles)
    channels = [p.channel for p in publications]
    last = max(p.received_at for p in publications) if publications else float("nan")
    elapsed = last - due
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
            ("ideal (count x delay / concurrency)", f"{ideal:.1f} s"),
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
        baseline=ideal,
        target="<= 2 x ideal, exactly once each; connections <= cap",
        met=elapsed <= 2 * ideal and once and connections.peak <= CAP,
        extra={
            "peak_connections": connections.peak,
            "exactly_once": once,
            "throttles": sum(throttles.values()),
        },
    )


if __name__ == "__main__":
    main()
