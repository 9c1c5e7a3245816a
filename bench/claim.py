"""Claim at scale: time to claim a batch of 200 due notifications (the activator's whole
transaction: housekeeping, claim, commit) with 10,000 and with 1,000,000 notifications
pending but not due. Target: median at 1,000,000 at most 1.5x the median at 10,000, and
under 20 ms."""

from __future__ import annotations

import os
import time

from common import database, median, percentile, progress, quiet_logs, report

REPEATS = int(os.environ.get("BENCH_CLAIM_REPEATS", "30"))
SIZES = [int(n) for n in os.environ.get("BENCH_CLAIM_SIZES", "10000,1000000").split(",")]
BATCH = 200


def fill(dsn: str, not_due: int) -> None:
    """``not_due`` pending notifications due tomorrow, plus 200 due now (one process)."""
    from devstack.peers.postgres import query

    query(dsn, "TRUNCATE notification, request_log, process RESTART IDENTITY CASCADE")
    query(
        dsn,
        """
        WITH p AS (INSERT INTO process (process_id) VALUES ('bench') RETURNING id)
        INSERT INTO notification (process_ref, position, channel, target, due_at)
        SELECT p.id, n, 'console', 'bench',
               CASE WHEN n < %s THEN now() - interval '1 second'
                    ELSE now() + interval '1 day' + n * interval '1 millisecond' END
        FROM p, generate_series(0, %s - 1) AS n
        """,
        (BATCH, not_due + BATCH),
    )
    import psycopg2

    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE notification")
    connection.close()


def time_claims(dsn: str) -> list[float]:
    from devstack.peers.postgres import query
    from escalator import bootstrap

    steps = bootstrap.delivery_steps()
    timings: list[float] = []
    for repeat in range(REPEATS):
        started = time.perf_counter()
        claim = steps.claim(execution=f"bench-{repeat}")
        timings.append((time.perf_counter() - started) * 1000)
        assert len(claim.notifications) == BATCH
        query(
            dsn,
            "UPDATE notification SET state = 'pending', claim_owner = NULL, lease_until = NULL"
            " WHERE state = 'claimed'",
        )
    return timings


def main() -> None:
    from escalator import bootstrap

    quiet_logs()
    medians: dict[int, float] = {}
    p95: dict[int, float] = {}
    with database() as dsn:
        os.environ["DATABASE_URL"] = dsn
        os.environ["CLAIM_BATCH_SIZE"] = str(BATCH)
        bootstrap.reset()
        for size in SIZES:
            progress(f"{size:,} pending notifications not due: filling")
            fill(dsn, size)
            progress(f"{size:,}: {REPEATS} claims of {BATCH}")
            timings = time_claims(dsn)
            medians[size], p95[size] = median(timings), percentile(timings, 0.95)
    small, large = medians[SIZES[0]], medians[SIZES[-1]]
    rows = [(f"{size:>9,} not due", f"median {medians[size]:.2f} ms, p95 {p95[size]:.2f} ms")
            for size in SIZES]  # fmt: skip
    rows.append(("ratio (largest / smallest)", f"{large / small:.2f}"))
    report(
        "claim",
        rows=rows,
        value=large,
        unit="ms",
        baseline=small,
        target="median at 1,000,000 <= 1.5 x median at 10,000, and < 20 ms",
        met=large <= 1.5 * small and large < 20,
    )


if __name__ == "__main__":
    main()
