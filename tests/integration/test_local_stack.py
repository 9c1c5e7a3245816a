"""``escalator local`` as a user runs it: a subprocess driven only through boto3 against
its endpoint, and its outbox."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import boto3
import psycopg2
import pytest
from psycopg2.extensions import make_dsn, parse_dsn

from devstack.emulation.template import synthesized_template
from devstack.local.demo import STORM, STORM_NUMBER, run_demo, start_local_stack
from devstack.local.outbox import read_outbox
from devstack.peers.postgres import query
from devstack.peers.providers import StatusCallback, TwilioStub
from devstack.peers.tls import ThrowawayCa
from devstack.polling import wait_until
from escalator.channels.twilio import NOTIFICATION_PARAMETER, status_callback_for
from escalator.executions import recent_executions
from escalator_cli.main import main as escalator

# Long: started first, so that the parallel run ends with the short tests.
pytestmark = pytest.mark.long

TICK = 2


@dataclass
class LocalStack:
    process: subprocess.Popen[str]
    ready: dict[str, Any]
    workdir: Path

    @property
    def sqs(self) -> Any:
        return boto3.client(
            "sqs", endpoint_url=self.ready["endpoint_url"], region_name=self.ready["region"]
        )

    def send(self, body: Any, *, group: str, deduplication_id: str | None = None) -> str:
        response = self.sqs.send_message(
            QueueUrl=self.ready["queue_url"],
            MessageBody=body if isinstance(body, str) else json.dumps(body),
            MessageGroupId=group,
            MessageDeduplicationId=deduplication_id or str(uuid.uuid4()),
        )
        message_id: str = response["MessageId"]
        return message_id

    def outbox(self) -> list[dict[str, Any]]:
        return read_outbox(Path(self.ready["outbox"]))

    @property
    def sfn(self) -> Any:
        return boto3.client(
            "stepfunctions",
            endpoint_url=self.ready["endpoint_url"],
            region_name=self.ready["region"],
        )

    def executions(self) -> dict[str, str]:
        """The status of every execution of its state machine, by execution ARN."""
        listed = self.sfn.list_executions(
            stateMachineArn=self.ready["state_machine_arn"], maxResults=1000
        )
        return {item["executionArn"]: item["status"] for item in listed["executions"]}

    def running(self) -> set[str]:
        """The executions running now."""
        return {arn for arn, status in self.executions().items() if status == "RUNNING"}

    def ended(self, process_id: str) -> bool:
        """Whether the processes with this id have ended and none of their notifications
        is still in flight (from its database): nothing of theirs can go out any more."""
        rows = query(
            self.ready["database_url"],
            "SELECT p.state, n.state FROM process p"
            " LEFT JOIN notification n ON n.process_ref = p.id WHERE p.process_id = %s",
            (process_id,),
        )
        in_flight = {"active", "pending", "claimed", "sending"}
        return bool(rows) and not in_flight & {state for row in rows for state in row}

    def process_states(self, process_id: str) -> list[str]:
        """The states of the processes with this id, oldest first (from its database)."""
        rows = query(
            self.ready["database_url"],
            "SELECT state FROM process WHERE process_id = %s ORDER BY id",
            (process_id,),
        )
        return [str(row[0]) for row in rows]

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def launch(workdir: Path, *options: str, drain: bool = True) -> LocalStack:
    process, ready = start_local_stack(workdir, tick=TICK, options=options, drain=drain)
    return LocalStack(process, ready, workdir)


def use_local_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_local_credentials(monkeypatch)


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One local stack for the tests that only use it as a client would; of its stdout,
    only the ready line is ever read (as a careless launcher would)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_local_credentials(monkeypatch)
        stack = launch(tmp_path_factory.mktemp("local-stack"), drain=False)
        yield stack
        if stack.process.poll() is None:
            stack.terminate()


def start(process_id: str, *notifications: dict[str, Any]) -> dict[str, Any]:
    return {"process-id": process_id, "action": "start", "notifications": list(notifications)}


def phone(at: int, number: str) -> dict[str, Any]:
    return {"channel": "phone", "at": at, "phone-number": number}


def email(at: int, address: str) -> dict[str, Any]:
    return {"channel": "email", "at": at, "email": address}


def pubnub(at: int, name: str) -> dict[str, Any]:
    return {"channel": "pubnub", "at": at, "pubnub-channel": name}


def console(at: int, label: str) -> dict[str, Any]:
    return {"channel": "console", "at": at, "label": label}


def wait_for(condition: Callable[[], object], timeout: float) -> None:
    wait_until(condition, timeout=timeout, interval=0.2)


def wait_for_executions_in_flight(stack: LocalStack) -> None:
    """Wait until the executions running now have ended: their outcomes are recorded,
    and the later ones start after every notification has ended."""
    running = stack.running()
    wait_for(lambda: not running & stack.running(), timeout=60)


@pytest.mark.xdist_group("local_stack")
def test_ready_line_names_everything_a_client_needs(local_stack: LocalStack) -> None:
    assert set(local_stack.ready) == {
        "endpoint_url",
        "region",
        "queue_url",
        "state_machine_arn",
        "database_url",
        "outbox",
        "twilio_status_callback_url",
    }
    attributes = local_stack.sqs.get_queue_attributes(
        QueueUrl=local_stack.ready["queue_url"], AttributeNames=["All"]
    )["Attributes"]
    assert attributes["FifoQueue"] == "true"
    assert attributes["ContentBasedDeduplication"] == "false"


@pytest.mark.xdist_group("local_stack")
def test_its_postgresql_is_served_over_tls_with_a_certificate_of_its_own_ca(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    # GIVEN the URL its functions connect with (the ready line's)
    url = local_stack.ready["database_url"]
    options = parse_dsn(url)
    authority = local_stack.workdir / "data" / "tls" / "ca.crt"
    assert (options["sslmode"], options["sslrootcert"]) == ("verify-full", str(authority))

    # THEN it connects over TLS, the server verified against the run's CA
    with closing(psycopg2.connect(url)) as connection:
        assert connection.info.ssl_in_use
    # and a client trusting another CA is refused
    other = ThrowawayCa(tmp_path, "Some other CA")
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        psycopg2.connect(make_dsn(url, sslrootcert=str(other.certificate)))


@pytest.mark.xdist_group("local_stack")
def test_every_contract_rule_holds_end_to_end(local_stack: LocalStack) -> None:
    stack = local_stack
    now = int(time.time())
    phone_1 = phone(now + 5, "+385911234567")
    # GIVEN requests as producers send them
    stack.send(start("r1", phone_1, email(now + 5, "owner@r1.example")), group="r1")
    stack.send(start("r1", pubnub(now + 5, "r1-duplicate")), group="r1")  # ignored
    stack.send(start("r2", phone(now + 9, "+38512345678")), group="r2")
    stack.send({"process-id": "r2", "action": "stop"}, group="r2")  # before the call
    stack.send({"process-id": "nobody", "action": "stop"}, group="nobody")  # ignored
    stack.send("{this is not json", group="r3")  # rejected, does not block r3
    stack.send(start("r3", console(now + 5, "after an invalid one")), group="r3")
    # (r4's is due later than the initiator claims at ingest, two ticks and 5 s, even
    # when it is stored 20 s late on a machine running two suites at once: a tick
    # delivers it; the others are due too soon for a tick, and the initiator starts
    # their delivery itself)
    stack.send(start("r4", phone(now + 3 * TICK + 25, "+14155550123")), group="r4")
    retried = start("r5", pubnub(now + 5, "r5-orders"))
    stack.send(retried, group="r5", deduplication_id="r5-order-1")
    stack.send(retried, group="r5", deduplication_id="r5-order-1")  # a producer's retry

    # WHEN their time comes
    wait_for(lambda: len(stack.outbox()) >= 5, timeout=60)
    wait_for(lambda: stack.process_states("r1") == ["completed"], timeout=30)
    stack.send(start("r1", console(int(time.time()) + 2, "second order")), group="r1")
    wait_for(lambda: len(stack.outbox()) >= 6, timeout=60)
    # (r2's call cancelled, every other process completed: nothing more can go out)
    wait_for(lambda: all(stack.ended(f"r{n}") for n in range(1, 6)), timeout=30)
    wait_for_executions_in_flight(stack)

    # THEN exactly these were delivered, once each
    records = [r for r in stack.outbox() if r["process_id"] in {f"r{n}" for n in range(1, 6)}]
    delivered = sorted((r["process_id"], r["channel"], r["target"]) for r in records)
    assert delivered == [
        ("r1", "console", "second order"),
        ("r1", "email", "owner@r1.example"),
        ("r1", "phone", "+385911234567"),
        ("r3", "console", "after an invalid one"),
        ("r4", "phone", "+14155550123"),
        ("r5", "pubnub", "r5-orders"),
    ]
    assert len({r["notification_id"] for r in records}) == len(records)
    assert all(r["outcome"] == "sent" and r["sent_at"] >= r["due_at"] for r in records)
    # caller ids: the longest prefix, else the default
    callers = {r["target"]: r["detail"]["from"] for r in records if r["channel"] == "phone"}
    assert callers == {"+385911234567": "+38591000000", "+14155550123": "+12025550123"}
    # AND the ticks are visible through the Step Functions API, each with what its
    # window delivered: r4's call among them, and nothing that was not delivered
    executions = recent_executions(
        state_machine_arn=stack.ready["state_machine_arn"],
        endpoint_url=stack.ready["endpoint_url"],
        region=stack.ready["region"],
        limit=1000,
    )
    assert any(execution["status"] == "SUCCEEDED" for execution in executions)
    recorded = [o for execution in executions for o in execution["outcomes"]]
    by_tick = sorted(o["notification_id"] for o in recorded if o["outcome"] == "sent")
    (r4,) = [r["notification_id"] for r in records if r["process_id"] == "r4"]
    assert r4 in by_tick
    assert len(by_tick) == len(set(by_tick))
    # (exactly those the database says a tick's window sent: the others' windows were
    # the initiator's, which no tick's output shows)
    ticked = query(
        stack.ready["database_url"],
        "SELECT id FROM notification WHERE state = 'sent' AND claim_owner NOT LIKE %s",
        ("arrival-%",),
    )
    assert by_tick == sorted(row[0] for row in ticked)


# (a stack of its own, on another worker: verify waits about 40 s for its tick's
# notification, which would otherwise lengthen the shared stack's queue of tests)
@pytest.mark.long(seconds=45)
@pytest.mark.xdist_group("local_stack_verify")
def test_escalator_verify_proves_both_paths_against_its_endpoint(
    local_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the local stack's endpoint (nothing else: verify finds the queue, the console
    # notifier's log group and the initiator's lookahead there, as on AWS by the stack)
    endpoint, region = local_stack.ready["endpoint_url"], local_stack.ready["region"]

    # WHEN an operator verifies it
    status = escalator(["verify", "--endpoint-url", endpoint, "--region", region])

    # THEN a tick delivered one notification and the initiator's window the other, each
    # once and read in the console notifier's log group; it says how late, and exits 0
    out, err = capsys.readouterr()
    assert status == 0, out + err
    heading, arrival, tick, verdict = out.splitlines()
    assert "read in /aws/lambda/FunctionsNotifierConsole" in heading
    assert re.search(
        r"^  arrival .* delivered once, by the initiator's window, \d+\.\d\d s late  ok$", arrival
    )
    assert re.search(
        r"^  tick .* delivered once, by the tick tick-[0-9a-f-]+, \d+\.\d\d s late  ok$", tick
    )
    assert verdict == "verified: each delivered once, by its own path"
    assert err.startswith("escalator verify: sent verify-")
    # AND nothing of the run stays active (its process completed; its stop came after)
    (process_id,) = re.findall(r"^(verify-[0-9a-f]+) ", heading)
    wait_for(lambda: local_stack.ended(process_id), timeout=30)
    assert local_stack.process_states(process_id) == ["completed"]


@pytest.mark.xdist_group("local_stack")
def test_its_embedded_postgresql_is_restarted_when_it_dies(local_stack: LocalStack) -> None:
    # (after the other tests of the shared stack: its database dies here)
    # GIVEN the embedded PostgreSQL of a running local stack is killed
    pgdata = local_stack.workdir / "data" / "postgres"
    killed = postmaster(pgdata)
    os.kill(killed, signal.SIGKILL)

    # WHEN the stack notices
    log = local_stack.workdir / "local.log"
    wait_for(lambda: "PostgreSQL restarted" in log.read_text(), timeout=60)

    # THEN it says so, a new server runs on the same data, and deliveries go on
    assert f"PostgreSQL (pid {killed}) is gone; starting it again" in log.read_text()
    assert postmaster(pgdata) != killed
    assert running(postmaster(pgdata))
    sent = len(local_stack.outbox())
    # (due beyond what the initiator delivers by itself: the ticks go on)
    local_stack.send(start("r9", console(int(time.time()) + 12, "after the restart")), group="r9")
    wait_for(lambda: len(local_stack.outbox()) > sent, timeout=60)
    assert local_stack.outbox()[-1]["target"] == "after the restart"


def postmaster(pgdata: Path) -> int:
    """The pid of the PostgreSQL server running on ``pgdata``."""
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def running(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


@pytest.mark.long(seconds=35)
def test_a_denied_tick_says_why_sigterm_exits_kill_9_orphans_nothing_and_restarts_deliver(
    tmp_path: Path, aws_env: None
) -> None:
    # (One run of two stacks on one data directory, for two stories: a template whose
    # tick may not start its window, and the stack's stops and restarts.)
    # GIVEN the synthesized template with states:StartSyncExecution taken from the tick's
    # role (what an operator is about to deploy: `cdk synth`'s file), run by the local
    # stack, and a notification due later than the initiator delivers by itself
    from tests.integration.test_permissions import without

    template = synthesized_template()
    good, broken = tmp_path / "good.template.json", tmp_path / "broken.template.json"
    good.write_text(json.dumps(template))
    broken.write_text(json.dumps(without(template, "DeliveryRole", "states:StartSyncExecution")))
    first = launch(tmp_path, "--template", str(broken))
    pgdata = tmp_path / "data" / "postgres"
    due = int(time.time()) + 15
    first.send(start("r1", phone(due, "+385911234567")), group="r1")

    # WHEN its ticks claim it
    def failed_ticks() -> list[dict[str, Any]]:
        return [
            first.sfn.describe_execution(executionArn=arn)
            for arn, status in first.executions().items()
            if status == "FAILED"
        ]

    wait_for(failed_ticks, timeout=90)

    # THEN nothing goes out; the tick failed and says why, its claim released at once,
    # and the alarm's metric is counted
    (failed, *_) = failed_ticks()
    assert failed["error"] == "DeliveryWindowFailed"
    window = json.loads(failed["cause"])["window"]
    assert (window["status"], window["error"], window["released"]) == (
        "NOT_STARTED",
        "Sfn.SfnException",
        1,
    )
    assert "is not authorized to perform: states:StartSyncExecution" in window["cause"]
    assert first.outbox() == []
    assert '"DeliveryWindowsFailed"' in (tmp_path / "local.log").read_text()

    # WHEN it is killed with SIGKILL
    server = postmaster(pgdata)
    first.process.kill()
    first.process.wait(timeout=15)

    # THEN its embedded PostgreSQL lives on, orphaned
    assert running(server)

    # WHEN the stack is started again on the same data directory, the permission back
    # (the good template deployed over the broken one)
    second = launch(tmp_path, "--template", str(good))
    try:
        # THEN it adopted the orphan (no second server) and a tick delivers the
        # notification, once
        assert postmaster(pgdata) == server
        wait_for(lambda: len(second.outbox()) >= 1, timeout=60)
        # (sent, and the executions that could have taken it ended: none can send it again)
        wait_for(lambda: second.ended("r1"), timeout=30)
        wait_for_executions_in_flight(second)
        (record,) = second.outbox()
        assert (record["process_id"], record["channel"], record["outcome"]) == (
            "r1",
            "phone",
            "sent",
        )
        assert record["sent_at"] >= due

        # AND WHEN it is sent SIGTERM with a notification still to come
        second.send(start("r2", console(int(time.time()) + 90, "never")), group="r2")
        wait_for(lambda: second.process_states("r2") == ["active"], timeout=30)
        started = time.monotonic()
    finally:
        terminated = second.terminate()

    # THEN it exits at once and cleanly (long before that notification is due: it does
    # not wait for it; on a machine running two suites at once, stopping takes seconds),
    # having delivered nothing more, and stops the database it adopted
    assert terminated == 0
    assert time.monotonic() - started < 30
    assert [record["process_id"] for record in second.outbox()] == ["r1"]
    wait_for(lambda: not running(server), timeout=15)


@pytest.mark.long(seconds=27)
def test_demo_scenario_runs_as_it_must_and_twilio_hears_from_it_as_from_the_stack_on_aws(
    aws_env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # GIVEN the Twilio stub the demo's local stack is configured for (its settings, not
    # a dry run), which reports each call's and message's progress as Twilio does
    twilio = TwilioStub()

    # WHEN the demo's scenario runs
    assert run_demo(tick=2, twilio=twilio, under=tmp_path) == 0

    # THEN it ran as it must, and left none of its files behind
    out = capsys.readouterr().out
    assert "The scenario ran as it must." in out
    assert list(tmp_path.iterdir()) == []
    assert "restaurant-2   phone           0         0  cancelled  ok      -" in out
    assert "restaurant-4   phone           0         0  coalesced  ok      -" in out
    # AND the number Twilio refused to call first was called after all, once; none of
    # the storm's calls coalesced into the refused one
    (storm,) = [line for line in out.splitlines() if line.startswith("storm-*: ")]
    assert storm.endswith("  ok")
    assert f"{STORM} calls to {STORM_NUMBER}" in storm
    assert Counter(call.form["To"] for call in twilio.calls)[STORM_NUMBER] >= 1
    # AND the call and the text message went to Twilio through the real adapter, which
    # reported on each: every callback (to the signed URL the call or message asked for,
    # by the method it named) landed, and settled it
    assert "restaurant-1   phone           1         1  sent       ok      completed" in out
    assert "restaurant-1   sms             1         1  sent       ok      delivered" in out
    (call,) = [call for call in twilio.calls if call.form["To"] != STORM_NUMBER]
    (message,) = twilio.messages
    assert call.form["Method"] == "GET"
    for delivery in (call, message):
        base, _, query_string = delivery.form["StatusCallback"].partition("?")
        notification_id = int(dict(parse_qsl(query_string))[NOTIFICATION_PARAMETER])
        expected = status_callback_for(base, notification_id, twilio.auth_token)
        assert delivery.form["StatusCallback"] == expected

    # (a status lands before the stub hears its answer)
    def callbacks() -> list[StatusCallback]:
        return [*twilio.callbacks, *twilio.message_callbacks]

    wait_for(lambda: sum(c.sid in (call.sid, message.sid) for c in callbacks()) >= 6, timeout=10)
    assert {callback.answer for callback in callbacks()} == {200}
    assert sum(callback.sid in (call.sid, message.sid) for callback in callbacks()) == 6


# (a page: what the smallest pipe holds)
PIPE_PAGE = 4096


@pytest.mark.xdist_group("local_stack")
def test_a_stdout_nobody_reads_never_stalls_a_burst_of_deliveries(local_stack: LocalStack) -> None:
    # GIVEN the local stack, of whose stdout only the ready line was read, its pipe
    # shrunk to the smallest Linux allows (as full as a 64 KiB one after 230 deliveries,
    # after about 15)
    stack = local_stack
    stdout = stack.process.stdout
    assert stdout is not None
    fcntl.fcntl(stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_PAGE)
    assert fcntl.fcntl(stdout.fileno(), fcntl.F_GETPIPE_SZ) == PIPE_PAGE

    # WHEN 60 notifications fall due (each delivery writes its metrics, a few hundred
    # bytes: more than the page holds)
    # (spread over two seconds, as a lunch hour is: all at once, most would wait out
    # throttled retries)
    due = int(time.time()) + 2
    for batch in range(4):
        stack.send(
            start(
                f"lunch-{batch}",
                *[console(due + batch // 2, f"order {batch}-{n}") for n in range(15)],
            ),
            group=f"lunch-{batch}",
        )

    # THEN every one is delivered
    def lunch() -> set[int]:
        return {
            record["notification_id"]
            for record in stack.outbox()
            if record["process_id"].startswith("lunch-")
        }

    wait_for(lambda: len(lunch()) >= 60, timeout=60)
    assert len(lunch()) == 60
    # AND nothing but the ready line ever went to stdout: the stack let go of it after
    # that line (were it still open, this read would fail instead of waiting)
    os.set_blocking(stdout.fileno(), False)
    assert stdout.read() == ""
    assert stack.process.poll() is None
