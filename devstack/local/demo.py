"""``escalator demo`` (``make demo``): a scripted scenario on the local stack.

Two restaurants start; one confirms its order before its call is due, so nothing is
sent to it; a third process calls the first restaurant's number within a minute of its
call, and is coalesced (the per-recipient guard: the phone rings once); fifty processes
call one number in the same second while Twilio refuses the first call, and the number
is called after all, once (a cover that fails covers nothing); an invalid request is
rejected without blocking anything; the first restaurant gets its phone call,
text message, e-mail and PubNub message, and once its process has completed it starts
again. Calls and text messages go through the real Twilio adapters to the loopback
Twilio stub, which reports on each as Twilio does; the other channels are dry runs.
Deliveries are shown as they happen; at the end, what the delivery windows did, read
as on AWS (the ticks' outputs, the windows' log group), and a summary table, with each
notification's final state and what Twilio reported, checked against what the scenario
must produce.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from devstack import CALLER_IDS
from devstack.local.outbox import read_outbox
from devstack.peers.postgres import query
from devstack.peers.providers import TwilioStub
from devstack.polling import NotInTime, wait_until
from escalator.client import Producer
from infra.timings import NOTIFIER_ATTEMPTS

# The demo's schedule period: short, so the scenario takes seconds.
DEMO_TICK = 3

# The storm: this many processes call one number in the same second, and Twilio refuses
# the first call to reach it at each of its attempts.
STORM = 50
STORM_NUMBER = "+385915550100"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def local_stack_command(workdir: Path, *, tick: int, options: tuple[str, ...] = ()) -> list[str]:
    """``escalator local`` with its data, caller ids and outbox under ``workdir``, and
    ``options`` of its command line."""
    registry = workdir / "caller-ids.json"
    registry.write_text(json.dumps(CALLER_IDS))
    return [
        sys.executable, "-m", "escalator_cli", "local",
        "--port", str(free_port()),
        "--tick", str(tick),
        "--data-dir", str(workdir / "data"),
        "--caller-id-registry", str(registry),
        "--outbox", str(workdir / "outbox.jsonl"),
        *options,
    ]  # fmt: skip


def start_local_stack(
    workdir: Path,
    *,
    tick: int,
    environment: dict[str, str] | None = None,
    options: tuple[str, ...] = (),
    drain: bool = True,
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start ``escalator local`` with its files under ``workdir`` (log: ``local.log``),
    with ``environment`` added to this process's and ``options`` to its command line;
    return the process and its ready line. Its stdout is read on (``drain``), or left
    unread after the ready line, as a careless launcher would."""
    log = (workdir / "local.log").open("a")
    process = subprocess.Popen(  # noqa: S603
        local_stack_command(workdir, tick=tick, options=options),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, **(environment or {})},
    )
    assert process.stdout is not None
    try:
        line = read_line(process.stdout, timeout=180)
    except BaseException:  # interrupted (Ctrl-C, a test's time limit): no stack left behind
        process.kill()
        raise
    if not line:
        process.kill()
        tail = (workdir / "local.log").read_text()[-3000:]
        raise RuntimeError(f"the local stack did not start; {workdir / 'local.log'} ends:\n{tail}")
    # Nothing more is expected there, but a pipe nobody reads must never fill: drain it.
    if drain:
        threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
    return process, json.loads(line)


def stop_local_stack(process: subprocess.Popen[str], *, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; whether SIGTERM was enough."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


def read_line(stream: IO[str], timeout: float) -> str:
    """The next line of ``stream``, or "" when none came within ``timeout`` seconds."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


def happens(condition: Callable[[], bool], timeout: float, on_wait: Callable[[], None]) -> bool:
    """Whether ``condition`` holds within ``timeout`` seconds, showing progress meanwhile."""
    try:
        wait_until(condition, timeout=timeout, interval=0.5, on_wait=on_wait)
    except NotInTime:
        return False
    return True


def run_demo(
    *, tick: int = DEMO_TICK, twilio: TwilioStub | None = None, under: Path | None = None
) -> int:
    """Run the scenario, against ``twilio`` (a new stub by default; the demo starts and
    stops it); 0 when everything happened as it must. Its files (the local stack's
    database, log and outbox: tens of MB) go in a new folder under ``under`` (the system's
    temporary folder by default), removed when the scenario ran as it must and kept, for
    reading, when it did not."""
    workdir = Path(tempfile.mkdtemp(prefix="escalator-demo-", dir=under))
    # Twilio on loopback: it takes calls and messages and reports on each, as Twilio does.
    twilio = twilio or TwilioStub()
    twilio.auto_report = ("initiated", "ringing", "in-progress", "completed")
    twilio.call_scripts[STORM_NUMBER] = deque([429] * NOTIFIER_ATTEMPTS)
    twilio.start()
    print(f"Starting the local stack (tick {tick} s, files in {workdir}) ...", flush=True)
    outcome = 1
    try:
        process, ready = start_local_stack(workdir, tick=tick, environment=twilio.environment())
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        try:
            outcome = _scenario(ready, Path(ready["outbox"]), tick)
            return outcome
        finally:
            stop_local_stack(process, timeout=20)
            print(f"Local stack stopped (exit {process.returncode}).")
    finally:
        twilio.stop()
        if outcome == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"Its files are kept in {workdir} (local.log, outbox.jsonl, the database).")


def _scenario(ready: dict[str, Any], outbox: Path, tick: int) -> int:
    producer = Producer(
        ready["queue_url"], endpoint_url=ready["endpoint_url"], region=ready["region"]
    )
    shown = 0

    def scene_records() -> list[dict[str, Any]]:
        """What the outbox holds for the scenes other than the storm."""
        return [r for r in read_outbox(outbox) if not r["process_id"].startswith("storm-")]

    def show_deliveries() -> None:
        nonlocal shown
        records = read_outbox(outbox)
        for record in records[shown:]:
            late = record["sent_at"] - record["due_at"]
            done = "delivered" if record["outcome"] == "sent" else "attempted"
            print(
                f"  {done}  {record['channel']:7} to {record['target']:22} "
                f"for {record['process_id']:13} {late:+5.1f} s after due  ({record['outcome']})"
            )
        shown = len(records)

    def process_states(process_id: str) -> list[str]:
        rows = query(
            ready["database_url"],
            "SELECT state FROM process WHERE process_id = %s ORDER BY id",
            (process_id,),
        )
        return [str(state) for (state,) in rows]

    def provider_statuses() -> dict[tuple[str, str], str | None]:
        """What the provider last reported, by process id and channel."""
        return {key: status for key, (_, status) in final_states().items()}

    def final_states() -> dict[tuple[str, str], tuple[str, str | None]]:
        """Each notification's state and provider status, by process id and channel."""
        rows = query(
            ready["database_url"],
            "SELECT p.process_id, n.channel, n.state, n.provider_status FROM notification n"
            " JOIN process p ON p.id = n.process_ref ORDER BY n.id",
        )
        return {
            (str(process_id), str(channel)): (str(state), status)
            for process_id, channel, state, status in rows
        }

    def all_ended() -> bool:
        ((ended,),) = query(
            ready["database_url"],
            "SELECT NOT EXISTS (SELECT FROM process WHERE state = 'active')"
            " AND NOT EXISTS (SELECT FROM notification"
            " WHERE state IN ('pending', 'claimed', 'sending'))",
        )
        return bool(ended)

    now = int(time.time())
    print(
        "restaurant-1 starts: a call at +4 s, a text message and an e-mail at +5 s,"
        " a PubNub message at +6 s"
    )
    producer.start(
        "restaurant-1",
        [
            {"channel": "phone", "at": now + 4, "phone-number": "+385911234567"},
            {"channel": "sms", "at": now + 5, "phone-number": "+385911234567"},
            {"channel": "email", "at": now + 5, "email": "owner@restaurant-1.example"},
            {"channel": "pubnub", "at": now + 6, "pubnub-channel": "restaurant-1-orders"},
        ],
    )
    print(
        "restaurant-4 starts by a producer's mistake: a call to restaurant-1's number at +8 s,"
        " within a minute of restaurant-1's call: it is coalesced, the phone rings once"
    )
    producer.start(
        "restaurant-4", [{"channel": "phone", "at": now + 8, "phone-number": "+385911234567"}]
    )
    # (before the storm's starts, and its stop too: those take seconds to ingest on a busy
    # machine, and the stop must be applied before the call is due)
    print("restaurant-2 starts: a call at +20 s")
    producer.start(
        "restaurant-2", [{"channel": "phone", "at": now + 20, "phone-number": "+14155550123"}]
    )
    started = happens(
        lambda: process_states("restaurant-2") == ["active"], timeout=30, on_wait=show_deliveries
    )
    print("restaurant-2 confirms its order: its call must not happen")
    producer.stop("restaurant-2")
    print(
        f"storm-1 ... storm-{STORM} start by a producer's mistake: each calls {STORM_NUMBER}"
        " at +12 s, and Twilio refuses the first call (429 at each attempt): the others"
        " wait for its outcome, and since it failed, the number is called after all, once"
    )
    for n in range(1, STORM + 1):
        producer.start(
            f"storm-{n}", [{"channel": "phone", "at": now + 12, "phone-number": STORM_NUMBER}]
        )
    print("an invalid request arrives (unknown channel): it is rejected, nothing blocks")
    producer.send_unchecked(
        json.dumps(
            {
                "process-id": "restaurant-3",
                "action": "start",
                "notifications": [{"channel": "fax", "at": now + 5}],
            }
        ),
        group_id="restaurant-3",
    )

    first = happens(
        lambda: len(scene_records()) >= 4, timeout=30 + 3 * tick, on_wait=show_deliveries
    )
    # (its process completes once its last outcome is recorded: a start before is ignored)
    completed = happens(
        lambda: process_states("restaurant-1") == ["completed"],
        timeout=10 + 3 * tick,
        on_wait=show_deliveries,
    )
    print("restaurant-1 has an order again: a new process starts (console notification, +3 s)")
    producer.start(
        "restaurant-1",
        [{"channel": "console", "at": int(time.time()) + 3, "label": "second order"}],
    )
    second = happens(
        lambda: len(scene_records()) >= 5, timeout=20 + 3 * tick, on_wait=show_deliveries
    )
    # (restaurant-2's call cancelled, every other process completed: nothing more goes out)
    settled = happens(all_ended, timeout=30, on_wait=show_deliveries)
    # (and Twilio has said what became of the call and of the message)
    reported = happens(
        lambda: all(provider_statuses().get(key) == status for key, status in REPORTED.items()),
        timeout=20,
        on_wait=show_deliveries,
    )
    ok = started and first and completed and second and settled and reported
    _windows(ready)
    storm = _storm(ready["database_url"])
    return _summary(scene_records(), final_states(), ok=ok and storm)


def _windows(ready: dict[str, Any]) -> None:
    """What the delivery windows did, as an operator sees it on AWS: the ticks' windows
    in the ticks' outputs (``escalator executions``), every window's failures in its log
    group (Step Functions lists and describes no Express execution)."""
    import boto3

    from escalator.executions import recent_executions, window_logs

    session = boto3.Session(region_name=ready["region"])
    sfn = session.client("stepfunctions", endpoint_url=ready["endpoint_url"])
    logs = session.client("logs", endpoint_url=ready["endpoint_url"])
    ticks = recent_executions(state_machine_arn=ready["state_machine_arn"], limit=1000, sfn=sfn)
    delivered = sum(len(tick["outcomes"]) for tick in ticks)
    failed = sum(1 for tick in ticks if tick["window"].get("failed"))
    print()
    print(
        f"the {len(ticks)} ticks' windows settled {delivered} notification(s) and "
        f"{failed or 'none'} failed (their outputs: escalator executions); the initiator's "
        "windows belong to no tick"
    )
    for group in window_logs(sfn):
        events = logs.filter_log_events(logGroupName=group["log_group"])["events"]
        kinds = Counter(json.loads(event["message"])["type"] for event in events)
        logged = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        print(
            f"every window's log, {group['log_group']} (level {group['level']}): "
            f"{logged or 'nothing logged'}"
        )


def _storm(database_url: str) -> bool:
    """Print what became of the storm's calls; whether the number was called and every
    one is accounted for: sent, failed with Twilio's refusal, or coalesced into a call
    that was placed (never into the refused one)."""
    rows = query(
        database_url,
        "SELECT n.state, c.state, n.error FROM notification n"
        " JOIN process p ON p.id = n.process_ref"
        " LEFT JOIN notification c ON c.id = n.covered_by"
        " WHERE p.process_id LIKE 'storm-%%'",
    )
    kinds = Counter(_storm_kind(state, cover, error) for state, cover, error in rows)
    right = len(rows) == STORM and kinds["sent"] >= 1 and not any("WRONG" in k for k in kinds)
    print()
    print(
        f"storm-*: {len(rows)} calls to {STORM_NUMBER}: "
        + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        + ("  ok" if right else "  WRONG")
    )
    return right


def _storm_kind(state: str, cover: str | None, error: str | None) -> str:
    """What became of one of the storm's calls, as the summary names it."""
    if state == "sent":
        return "sent"
    if state == "failed" and "429" in str(error):
        return "failed (Twilio refused it: 429)"
    if state == "coalesced" and cover == "sent":
        return "coalesced into a call that was placed"
    return f"{state} (WRONG)"


# What Twilio must have reported at the end: the call answered, the message delivered.
REPORTED = {("restaurant-1", "phone"): "completed", ("restaurant-1", "sms"): "delivered"}


# What the scenario must produce: deliveries and final state per (process id, channel).
EXPECTED: dict[tuple[str, str], tuple[int, str]] = {
    ("restaurant-1", "phone"): (1, "sent"),
    ("restaurant-1", "sms"): (1, "sent"),
    ("restaurant-1", "email"): (1, "sent"),
    ("restaurant-1", "pubnub"): (1, "sent"),
    ("restaurant-1", "console"): (1, "sent"),
    ("restaurant-2", "phone"): (0, "cancelled"),
    ("restaurant-4", "phone"): (0, "coalesced"),
}


def _summary(
    records: list[dict[str, Any]],
    states: dict[tuple[str, str], tuple[str, str | None]],
    *,
    ok: bool,
) -> int:
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        if record["outcome"] == "sent":
            key = (record["process_id"], record["channel"])
            counts[key] = counts.get(key, 0) + 1
    print()
    print(
        f"{'process':14} {'channel':8} {'expected':>8} {'delivered':>9}  {'state':10} "
        "result  provider status"
    )
    matches = ok
    for (process_id, channel), (want, final) in EXPECTED.items():
        got = counts.get((process_id, channel), 0)
        state, status = states.get((process_id, channel), ("-", None))
        right = (
            got == want and state == final and status == REPORTED.get((process_id, channel), status)
        )
        matches = matches and right
        print(
            f"{process_id:14} {channel:8} {want:>8} {got:>9}  {state:10} "
            f"{'ok' if right else 'WRONG':6}  {status or '-'}"
        )
    unexpected = {key: value for key, value in counts.items() if key not in EXPECTED}
    if unexpected:
        matches = False
        print(f"unexpected deliveries: {unexpected}")
    caller_ids = {r["detail"].get("from") for r in records if r["channel"] in ("phone", "sms")}
    print(f"caller id used for +38591...: {', '.join(sorted(str(c) for c in caller_ids))}")
    print("The scenario ran as it must." if matches else "The scenario did NOT run as it must.")
    return 0 if matches else 1
