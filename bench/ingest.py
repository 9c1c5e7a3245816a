"""Ingest: the initiator handler on SQS-shaped batches of 10 start requests (3
notifications each), against bare psycopg2 doing the same inserts in the same
per-message transactions, on the same database in the same run.
Target: handler throughput at least 0.8 of the baseline; connections within the cap.
Also printed: the client's CPU per message of each (``time.process_time``: PostgreSQL
runs in a process of its own), which a busy machine disturbs far less than the rates."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from common import database, median, progress, quiet_logs, report

BATCHES = int(os.environ.get("BENCH_INGEST_BATCHES", "100"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CAP = 30


def bodies(prefix: str, count: int) -> list[str]:
    due = int(time.time()) + 3600
    return [
        json.dumps(
            {
                "process-id": f"{prefix}-{n}",
                "action": "start",
                "notifications": [
                    {"channel": "phone", "at": due, "phone-number": "+385911234567"},
                    {"channel": "email", "at": due + 60, "email": "owner@example.com"},
                    {"channel": "pubnub", "at": due + 120, "pubnub-channel": f"orders-{n}"},
                ],
            }
        )
        for n in range(count)
    ]


def handler_round(prefix: str) -> tuple[float, float]:
    """Messages per second through the handler, and its CPU seconds per message."""
    from devstack.emulation.events import lambda_context, sqs_event, sqs_record
    from escalator.handlers import initiator

    texts = bodies(prefix, BATCHES * 10)
    events = [
        sqs_event(*(sqs_record(text, group=json.loads(text)["process-id"]) for text in chunk))
        for chunk in (texts[i : i + 10] for i in range(0, len(texts), 10))
    ]
    context = lambda_context()
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        response: Any = initiator.handler(event, context)
        assert response == {"batchItemFailures": []}
    cpu = time.process_time() - cpu
    return len(texts) / (time.perf_counter() - started), cpu / len(texts)


def target(item: dict[str, Any]) -> str:
    return str(item.get("phone-number") or item.get("email") or item.get("pubnub-channel"))


def baseline_round(dsn: str, prefix: str) -> tuple[float, float]:
    """Messages per second through bare psycopg2, and its CPU seconds per message."""
    import psycopg2
    from psycopg2.extras import execute_values

    texts = bodies(prefix, BATCHES * 10)
    connection = psycopg2.connect(dsn)
    started, cpu = time.perf_counter(), time.process_time()
    with connection.cursor() as cursor:
        for text in texts:
            document = json.loads(text)
            cursor.execute(
                "INSERT INTO process (process_id) VALUES (%s) RETURNING id",
                (document["process-id"],),
            )
            (ref,) = cursor.fetchone() or (None,)
            rows = [
                (ref, i, item["channel"], target(item), item["at"])
                for i, item in enumerate(document["notifications"])
            ]
            execute_values(
                cursor,
                "INSERT INTO notification (process_ref, position, channel, target, due_at)"
                " VALUES %s",
                rows,
                template="(%s, %s, %s, %s, to_timestamp(%s))",
            )
            cursor.execute(
                "INSERT INTO request_log (message_id, process_id, action, outcome, process_ref)"
                " VALUES (%s, %s, 'start', 'started', %s)",
                (str(uuid.uuid4()), document["process-id"], ref),
            )
            connection.commit()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    connection.close()
    return len(texts) / elapsed, cpu / len(texts)


def main() -> None:
    from devstack.peers.postgres import ConnectionSampler
    from escalator import bootstrap

    quiet_logs()
    with database() as dsn:
        os.environ["DATABASE_URL"] = dsn
        bootstrap.reset()
        handler_rates: list[float] = []
        baseline_rates: list[float] = []
        handler_cpu: list[float] = []
        baseline_cpu: list[float] = []
        with ConnectionSampler(dsn) as connections:
            for round_number in range(ROUNDS):
                progress(f"round {round_number + 1}/{ROUNDS}: {BATCHES} batches each way")
                rate, cpu = handler_round(f"h{round_number}")
                handler_rates.append(rate)
                handler_cpu.append(cpu)
                rate, cpu = baseline_round(dsn, f"b{round_number}")
                baseline_rates.append(rate)
                baseline_cpu.append(cpu)
    handler, baseline = median(handler_rates), median(baseline_rates)
    handler_us, baseline_us = median(handler_cpu) * 1e6, median(baseline_cpu) * 1e6
    ratio = handler / baseline
    report(
        "ingest",
        rows=[
            ("messages per round", str(BATCHES * 10)),
            ("handler (median msg/s)", f"{handler:.0f}"),
            ("bare psycopg2 (median msg/s)", f"{baseline:.0f}"),
            ("ratio", f"{ratio:.2f}"),
            ("client CPU per message, handler (median)", f"{handler_us:.0f} us"),
            ("client CPU per message, bare psycopg2 (median)", f"{baseline_us:.0f} us"),
            ("peak database connections", f"{connections.peak} (cap {CAP})"),
        ],
        value=handler,
        unit="messages/s",
        baseline=baseline,
        target=">= 0.8 x bare psycopg2; connections <= cap",
        met=ratio >= 0.8 and connections.peak <= CAP,
        extra={
            "peak_connections": connections.peak,
            "cpu_us_per_message": round(handler_us),
            "baseline_cpu_us_per_message": round(baseline_us),
        },
    )


if __name__ == "__main__":
    main()
