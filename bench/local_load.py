"""Local load: a lunch hour against ``escalator local``. 2,000 start requests from 8
threads (one notification each, due 60-120 s after it was sent, channels in turn) go to
the local stack's queue; the run waits for every delivery in the outbox.

Prints the ingest rate (requests stored per second, first send to last stored), the
send-to-stored delay, the lateness of each delivery (sent - due) and whether every
notification was delivered exactly once. Baseline: what the emulator underneath takes
unchanged: the same 8 threads sending the same bodies (the first 500) to a FIFO queue
nobody reads of a stock moto server, in its own process, in the same run. Target:
ingest at least 100 requests a second, every notification delivered exactly once, p99
lateness at most 2 s."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import median, percentile, progress, report

REQUESTS = int(os.environ.get("BENCH_LOAD_REQUESTS", "2000"))
BASELINE_REQUESTS = int(os.environ.get("BENCH_LOAD_BASELINE_REQUESTS", "500"))
THREADS = int(os.environ.get("BENCH_LOAD_THREADS", "8"))
TICK = int(os.environ.get("BENCH_LOAD_TICK", "60"))
EARLIEST, LATEST = 60, 120
TARGET_RATE, TARGET_P99 = 100.0, 2.0

CHANNELS: list[Callable[[int], dict[str, Any]]] = [
    # (a number of its own per process: the per-recipient guard would coalesce the rest)
    lambda n: {"channel": "phone", "phone-number": f"+38591{n:07d}"},
    lambda n: {"channel": "email", "email": f"owner-{n}@restaurant.example"},
    lambda n: {"channel": "pubnub", "pubnub-channel": f"orders-{n}"},
]


def body(run: str, n: int, sent: float) -> tuple[str, str]:
    """The process id and JSON body of request ``n``, due 60-120 s after ``sent``."""
    process_id = f"{run}-{n}"
    delay = EARLIEST + n * 7919 % (LATEST - EARLIEST + 1)
    notification = {**CHANNELS[n % len(CHANNELS)](n), "at": int(sent) + delay}
    document = {"process-id": process_id, "action": "start", "notifications": [notification]}
    return process_id, json.dumps(document)


def send_all(
    ready: dict[str, Any], queue_url: str, run: str, count: int = REQUESTS
) -> dict[str, float]:
    """Send ``count`` starts from ``THREADS`` threads; return when each was sent."""
    import boto3

    sent: dict[str, float] = {}
    lock = threading.Lock()
    failures: list[BaseException] = []

    def producer(offset: int) -> None:
        sqs = boto3.client("sqs", endpoint_url=ready["endpoint_url"], region_name=ready["region"])
        try:
            for n in range(offset, count, THREADS):
                at = time.time()
                process_id, text = body(run, n, at)
                sqs.send_message(
                    QueueUrl=queue_url,
                    MessageBody=text,
                    MessageGroupId=process_id,
                    MessageDeduplicationId=uuid.uuid4().hex,
                )
                with lock:
                    sent[process_id] = at
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sent


def baseline_rate() -> float:
    """Requests a second the same senders get into a FIFO queue nobody reads of a stock
    moto server (its own process, none of the local stack's changes)."""
    import boto3

    from devstack.emulation.template import REGION
    from devstack.local.demo import free_port
    from devstack.polling import wait_until

    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = {"endpoint_url": f"http://127.0.0.1:{port}", "region": REGION}
        sqs = boto3.client("sqs", endpoint_url=endpoint["endpoint_url"], region_name=REGION)
        urls: list[str] = []

        def created() -> bool:
            try:
                attributes = {"FifoQueue": "true"}
                urls.append(sqs.create_queue(QueueName="q.fifo", Attributes=attributes)["QueueUrl"])
            except Exception:  # not listening yet
                return False
            return True

        wait_until(created, timeout=60, interval=0.2, what="the stock moto server")
        began = time.time()
        send_all(endpoint, urls[0], f"baseline-{uuid.uuid4().hex[:6]}", BASELINE_REQUESTS)
        return BASELINE_REQUESTS / (time.time() - began)
    finally:
        server.terminate()
        server.wait(timeout=30)


def stored_at(database_url: str, run: str) -> dict[str, float]:
    """When each of this run's requests was stored (its request log row)."""
    from devstack.peers.postgres import query

    rows = query(
        database_url,
        "SELECT process_id, extract(epoch FROM received_at) FROM request_log"
        " WHERE process_id LIKE %s",
        (f"{run}-%",),
    )
    return {str(process_id): float(at) for process_id, at in rows}


def deliveries(outbox: Path, run: str) -> list[dict[str, Any]]:
    """This run's records in the outbox."""
    from devstack.local.outbox import read_outbox

    return [r for r in read_outbox(outbox) if str(r["process_id"]).startswith(f"{run}-")]


def main() -> None:
    from devstack.local.demo import start_local_stack, stop_local_stack

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    workdir = Path(tempfile.mkdtemp(prefix="escalator-load-"))
    progress(f"baseline: {BASELINE_REQUESTS} sends from {THREADS} threads to stock moto")
    baseline = baseline_rate()
    progress(f"starting the local stack (tick {TICK} s, files in {workdir})")
    process, ready = start_local_stack(workdir, tick=TICK)
    try:
        run = f"load-{uuid.uuid4().hex[:6]}"
        progress(f"{REQUESTS} starts from {THREADS} threads to the local stack")
        began = time.time()
        sent = send_all(ready, ready["queue_url"], run)
        sending = time.time() - began
        progress(f"sent in {sending:.1f} s; waiting for every request to be stored")
        stored: dict[str, float] = {}
        deadline = began + LATEST + 3 * TICK + 60
        while len(stored) < REQUESTS and time.time() < deadline:
            time.sleep(2)
            stored = stored_at(ready["database_url"], run)
            progress(f"{len(stored)}/{REQUESTS} stored")
        outbox = Path(ready["outbox"])
        delivered = deliveries(outbox, run)
        while len(delivered) < REQUESTS and time.time() < deadline:
            time.sleep(5)
            delivered = deliveries(outbox, run)
            progress(f"{len(delivered)}/{REQUESTS} delivered")
        time.sleep(2)  # anything delivered twice would show up now
        delivered = deliveries(outbox, run)
    finally:
        if not stop_local_stack(process, timeout=30):
            progress("the local stack ignored SIGTERM for 30 s and was killed")

    delays = [stored[pid] - sent[pid] for pid in stored if pid in sent]
    ingest = len(stored) / (max(stored.values()) - began) if stored else 0.0
    late_stored = sum(1 for pid in stored if stored[pid] > sent[pid] + EARLIEST)
    lateness = [r["sent_at"] - r["due_at"] for r in delivered if r["outcome"] == "sent"]
    counts = Counter(r["notification_id"] for r in delivered)
    duplicates = sum(count - 1 for count in counts.values())
    exactly_once = len(counts) == REQUESTS and duplicates == 0
    p99 = percentile(lateness, 0.99)
    met = ingest >= TARGET_RATE and exactly_once and p99 <= TARGET_P99
    report(
        "local_load",
        rows=[
            ("requests", f"{REQUESTS} from {THREADS} threads, sent in {sending:.1f} s"),
            ("ingest (stored/s)", f"{ingest:.1f}  (target >= {TARGET_RATE:g})"),
            ("baseline (stock moto, sends/s)", f"{baseline:.1f}"),
            (
                "send -> stored, p50 / p99 / max",
                f"{median(delays) if delays else float('nan'):.2f} / "
                f"{percentile(delays, 0.99):.2f} / {max(delays, default=float('nan')):.2f} s",
            ),
            ("stored after their own due", f"{late_stored}"),
            (
                "lateness (sent - due), p50 / p99 / max",
                f"{median(lateness) if lateness else float('nan'):.2f} / {p99:.2f} / "
                f"{max(lateness, default=float('nan')):.2f} s  (target p99 <= {TARGET_P99:g})",
            ),
            (
                "delivered",
                f"{len(counts)} of {REQUESTS}, {duplicates} twice or more"
                f"{'' if exactly_once else '  (NOT exactly once)'}",
            ),
        ],
        value=ingest,
        unit="requests/s",
        baseline=baseline,
        target=f">= {TARGET_RATE:g} requests/s, exactly once, p99 lateness <= {TARGET_P99:g} s",
        met=met,
        extra={
            "stored": len(stored),
            "send_to_stored_p50": round(median(delays), 3) if delays else None,
            "send_to_stored_p99": round(percentile(delays, 0.99), 3) if delays else None,
            "lateness_p50": round(median(lateness), 3) if lateness else None,
            "lateness_p99": round(p99, 3) if lateness else None,
            "lateness_max": round(max(lateness), 3) if lateness else None,
            "delivered": len(counts),
            "duplicates": duplicates,
        },
    )
    # (the stack's database, log and outbox, 46 MB: kept to be read when the target was
    # missed, removed when it was met)
    if met:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        progress(f"the local stack's files are kept in {workdir}")


if __name__ == "__main__":
    main()
