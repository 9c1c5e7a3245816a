"""Lateness: 200 notifications due over two minutes, a 10 s schedule, the synthesized
state machine (moto interpreter, in-process handlers, a loopback PubNub peer). Prints
p50, p99 and max of sent - due, and how many were early. Baseline: the original's
strategy (deliver what is due at each tick, no wait) on the same ticks of the same run.
Target: p99 at most 1.5 s, none early."""

from __future__ import annotations

import os
import time

from common import database, percentile, pipeline, progress, quiet_logs, report, submit

COUNT = int(os.environ.get("BENCH_LATENESS_COUNT", "200"))
SPREAD = int(os.environ.get("BENCH_LATENESS_SPREAD", "120"))
TICK = 10


def main() -> None:
    quiet_logs()
    with database() as dsn, pipeline(dsn, LOOKAHEAD_SECONDS=str(TICK)) as (machine, peers, _):
        first_due = int(time.time()) + 5
        dues = [first_due + (SPREAD * n) // COUNT for n in range(COUNT)]
        submit(
            [
                {
                    "process-id": f"restaurant-{n}",
                    "action": "start",
                    "notifications": [
                        {"channel": "pubnub", "at": due, "pubnub-channel": f"ch-{n}"}
                    ],
                }
                for n, due in enumerate(dues)
            ]
        )
        ticks: list[float] = []
        deadline = dues[-1] + 3 * TICK
        progress(f"{COUNT} notifications due over {SPREAD} s; ticking every {TICK} s")
        while len(peers.pubnub.publications) < COUNT and time.time() < deadline:
            ticks.append(time.time())
            machine.start({"period_seconds": TICK})
            time.sleep(TICK)
            progress(f"{len(peers.pubnub.publications)}/{COUNT} delivered")
        publications = list(peers.pubnub.publications)
    lateness = [p.received_at - p.message["at"] for p in publications]
    baseline = [
        min(t for t in ticks if t >= due) - due for due in dues if any(t >= due for t in ticks)
    ]
    early = sum(1 for late in lateness if late < 0)
    unique = len({p.channel for p in publications})
    p99, base_p99 = percentile(lateness, 0.99), percentile(baseline, 0.99)
    report(
        "lateness",
        rows=[
            (
                "delivered",
                f"{len(publications)} of {COUNT} (unique: {unique})",
            ),
            (
                "sent - due, p50 / p99 / max",
                f"{percentile(lateness, 0.5):.2f} / {p99:.2f} / {max(lateness):.2f} s",
            ),
            ("delivered early", str(early)),
            (
                "baseline (deliver at each tick) p50 / p99",
                f"{percentile(baseline, 0.5):.2f} / {base_p99:.2f} s",
            ),
        ],
        value=p99,
        unit="s (p99 of sent - due)",
        baseline=base_p99,
        target="p99 <= 1.5 s, none early",
        met=p99 <= 1.5 and early == 0 and len(publications) == COUNT,
        extra={"early": early, "delivered": len(publications)},
    )


if __name__ == "__main__":
    main()
