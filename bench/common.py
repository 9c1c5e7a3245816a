"""Shared pieces of the benchmarks: an embedded PostgreSQL, the moto-run state machine
with loopback peers (both from ``devstack``), statistics, and the report format (a
table, then one JSON line)."""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("TZ", "UTC")
time.tzset()
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
# The functions' EMF metric lines would drown the tables.
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def quiet_logs() -> None:
    """The functions' JSON logs go to /dev/null: the cost of writing them stays counted."""
    import logging

    from escalator.logs import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the run
    logging.getLogger("moto").setLevel(logging.CRITICAL)


class ByteCounter(io.TextIOBase):
    """A text stream that keeps only how much was written to it: UTF-8 bytes and lines."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.lines = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        size = len(text.encode())
        with self._lock:
            self.bytes += size
            self.lines += text.count("\n")
        return len(text)


def counted_logs() -> ByteCounter:
    """As ``quiet_logs``, but the functions' JSON log lines are counted, not dropped."""
    import logging

    from escalator.logs import logger

    counter = ByteCounter()
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(counter)
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    return counter


@contextmanager
def database() -> Iterator[str]:
    """A migrated database: ``DATABASE_URL``'s server if set, else an embedded one."""
    from devstack.peers.postgres import postgres_server
    from escalator.migrations import default_sql_dir, migrate

    with (
        tempfile.TemporaryDirectory(prefix="escalator-bench-") as scratch,
        postgres_server(Path(scratch)) as server,
    ):
        name = server.create_database(template=server.template)
        dsn = server.dsn(name)
        migrate(dsn, default_sql_dir())
        try:
            yield dsn
        finally:
            server.drop_database(name)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(
    bench: str,
    *,
    rows: Sequence[tuple[str, str]],
    value: float,
    unit: str,
    baseline: float | None,
    target: str,
    met: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """Print the table, then the JSON line that must be the script's last."""
    width = max(len(label) for label, _ in rows)
    print(f"\n{bench}")
    for label, shown in rows:
        print(f"  {label:<{width}}  {shown}")
    ratio = None if not baseline else round(value / baseline, 3)
    line = {
        "bench": bench,
        "value": round(value, 4),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 4),
        "ratio": ratio,
        "target": target,
        "met": met,
        **(extra or {}),
    }
    print(json.dumps(line), flush=True)


@contextmanager
def pipeline(dsn: str, *, window_log_level: str | None = None, **settings: str) -> Iterator[Any]:
    """The synthesized state machine run by moto, handlers in-process, peers on loopback
    (``devstack.local.pipeline``; ``window_log_level``: the delivery window's, when not the
    template's). Yields ``(machine, peers, lambdas)``."""
    from devstack.local.pipeline import running_pipeline

    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    with running_pipeline(dsn, settings, window_log_level=window_log_level) as running:
        yield running.machine, running.peers, running.lambdas


def submit(documents: Sequence[dict[str, Any]]) -> None:
    """Apply start requests through the initiator, ten to a batch."""
    from devstack.emulation.events import lambda_context, sqs_event, sqs_record
    from escalator.handlers import initiator

    for start in range(0, len(documents), 10):
        records = [sqs_record(document) for document in documents[start : start + 10]]
        response: Any = initiator.handler(sqs_event(*records), lambda_context())
        assert response == {"batchItemFailures": []}, response
