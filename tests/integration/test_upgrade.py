"""The upgrade rehearsal: the previous release (its template, its functions' code) stood
up and delivering, then this tree deployed over it as CloudFormation updates a stack
(devstack.rehearsal.upgrade) while notifications fall due across the deploy."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from devstack.emulation.sqs import EventSource
from devstack.emulation.template import synthesized_template, with_provider_settings
from devstack.peers.postgres import query
from devstack.peers.providers import PubNubStub
from devstack.polling import NotInTime, wait_until
from devstack.rehearsal.deployment import Rehearsal, Sandbox, rehearse
from devstack.rehearsal.release import extract_release, previous_release, release_template
from devstack.rehearsal.upgrade import Upgrade
from escalator.client import Producer
from escalator.lifecycle import NotificationState
from escalator.migrations import default_sql_dir, discover
from escalator.verification import Verification, deployment_at_endpoint, verify

pytestmark = [
    pytest.mark.long(seconds=90),
    pytest.mark.xdist_group("upgrade"),
    pytest.mark.timeout(300),
]

CHECKOUT = Path(__file__).resolve().parents[2]
# Processes whose notifications ticks deliver, by when they fall due: while the previous
# release delivers, once the migration ran, while the functions are replaced, after the
# deploy; and processes of near-due arrivals, which the initiator's windows deliver.
TICKS = {
    phase: [f"tick-{phase}-{index}" for index in range(count)]
    for phase, count in {"before": 8, "during": 2, "crossing": 2, "after": 4}.items()
}
ARRIVALS = 10


class GatedPubNub(PubNubStub):
    """A PubNub origin that, once ``armed``, holds the next publication until
    ``release()``: a provider answering late, the moment a deploy lands in between."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.held_channel: str | None = None
        self.held = threading.Event()
        self._released = threading.Event()
        self._gate = threading.Lock()

    def answer(self, request: BaseHTTPRequestHandler) -> tuple[int, Any]:
        channel = urllib.parse.unquote(request.path.partition("?")[0].split("/")[5])
        with self._gate:
            hold = self.armed and self.held_channel is None
            if hold:
                self.held_channel = channel
        if hold:
            self.held.set()
            self._released.wait(timeout=8)  # (the notifier's own timeout is 10 s)
        return super().answer(request)

    def release(self) -> None:
        self._released.set()


def served(sandbox: Sandbox) -> list[int]:
    """The notifications a function's process answered for, in order; a failure of the
    function fails the test with its message."""
    return [int(event["notification_id"]) for event in served_events(sandbox)]


@contextmanager
def traffic(stage: Rehearsal, queue: str) -> Iterator[Callable[[], None]]:
    """The schedule (a tick every two seconds, as its role starts it, with the input the
    schedule deployed last gives) and the queue's event source (the initiator deployed
    last), both in the background; yields what stops them."""
    stopped = threading.Event()
    failures: list[BaseException] = []
    (initiator,) = [name for name in stage.sandboxes if name.startswith("FunctionsInitiator")]

    def initiate(event: dict[str, Any], context: Any) -> Any:
        return stage.lambdas.overrides[initiator](event, context)

    source = EventSource(
        stage.client_as("FunctionsInitiator", "sqs"),
        queue,
        initiate,
        context=None,
        wait_seconds=0,
        redrive_sqs=stage.session.client("sqs", endpoint_url=stage.endpoint_url),
    )

    def run(step: Callable[[], object], pause: float) -> None:
        try:
            while not stopped.is_set():
                step()
                stopped.wait(pause)
        except BaseException as exc:  # (reported by the test)
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(lambda: stage.machine.start(stage.schedule_input), 2)),
        threading.Thread(target=run, args=(source.poll_once, 0.2)),
    ]
    for thread in threads:
        thread.start()

    def stop() -> None:
        stopped.set()
        for thread in threads:
            thread.join(timeout=30)
        assert failures == []

    try:
        yield stop
    finally:
        stopped.set()


def served_events(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The events a function's process answered, a failure failing the test."""
    failures = [answer for _, answer in sandbox.served if not answer["ok"]]
    assert not failures, f"{sandbox.spec.logical_id} ({sandbox.code or 'this tree'}): {failures[0]}"
    return [event for event, _ in sandbox.served]


def request_queue(stage: Rehearsal) -> str:
    (queue,) = [url for name, url in stage.queue_urls.items() if "DeadLetters" not in name]
    return queue


def fall_due(stage: Rehearsal, processes: list[str], *, after: int, spread: int) -> None:
    """The processes' notifications due ``after`` seconds from now and up to ``spread``
    seconds later: stored long ago, due now."""
    query(
        stage.database_url,
        "UPDATE notification n SET due_at = date_trunc('second', now())"
        " + make_interval(secs => %s + mod(n.id, %s))"
        " FROM process p WHERE p.id = n.process_ref AND p.process_id = ANY(%s) RETURNING n.id",
        (after, spread, processes),
    )


def states(stage: Rehearsal) -> Counter[str]:
    """The burst's notifications by state (not ``escalator verify``'s)."""
    return Counter(
        state
        for (state,) in query(
            stage.database_url,
            "SELECT n.state FROM notification n JOIN process p ON p.id = n.process_ref"
            " WHERE NOT starts_with(p.process_id, 'verify-')",
        )
    )


# verify's tick notification, stored (its process is verify-<run>, due minutes out) ...
VERIFY_TICK_STORED = """
SELECT count(*) FROM notification n JOIN process p ON p.id = n.process_ref
WHERE starts_with(p.process_id, 'verify-') AND n.state = 'pending'
  AND n.due_at > now() + interval '1 minute'
"""
# ... and due in seconds.
VERIFY_TICK_DUE = """
UPDATE notification n SET due_at = date_trunc('second', now()) + interval '4 seconds'
FROM process p
WHERE p.id = n.process_ref AND starts_with(p.process_id, 'verify-') AND n.state = 'pending'
  AND n.due_at > now() + interval '1 minute'
RETURNING n.id
"""


def unsent(stage: Rehearsal) -> str:
    """What an operator would look at when notifications are not sent: each one's row, and
    every function error any sandbox (of either release) answered."""
    rows = query(
        stage.database_url,
        "SELECT p.process_id, n.position, n.state, n.claim_owner, n.due_at, n.error"
        " FROM notification n JOIN process p ON p.id = n.process_ref"
        " WHERE n.state <> 'sent' ORDER BY n.id",
    )
    return "\n".join([*(str(row) for row in rows), *function_errors(stage)[:20]])


def function_errors(stage: Rehearsal) -> list[str]:
    """Every function error any sandbox (of either release) answered."""
    return [
        f"{sandbox.spec.logical_id} ({sandbox.code or 'this tree'}): {answer}"
        for sandbox in [*stage.retired, *stage.sandboxes.values()]
        for _, answer in sandbox.served
        if not answer["ok"]
    ]


def verified(stage: Rehearsal) -> Verification:
    """``escalator verify`` against the stage, as an operator runs it after a deploy (the
    ticks and the event source running). Its tick's notification, which the initiator
    stores due beyond the near-due horizon (two minutes), is made due in seconds once
    stored, as time would have passed."""
    sqs = stage.session.client("sqs", endpoint_url=stage.endpoint_url)
    deployment = deployment_at_endpoint(
        sqs=sqs,
        lambda_client=stage.session.client("lambda", endpoint_url=stage.endpoint_url),
        endpoint=stage.endpoint_url,
    )
    outcome: list[Verification | BaseException] = []

    def run() -> None:
        try:
            logs = stage.session.client("logs", endpoint_url=stage.endpoint_url)
            outcome.append(verify(deployment, sqs=sqs, logs=logs, settle=2, poll=0.5))
        except BaseException as exc:  # (raised by the test below)
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(
        lambda: query(stage.database_url, VERIFY_TICK_STORED) == [(1,)],
        timeout=30,
        what="verify's tick notification stored",
    )
    query(stage.database_url, VERIFY_TICK_DUE)
    thread.join(timeout=120)
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def assert_verified(verification: Verification) -> None:
    """Both of verify's notifications delivered once, each by its own path."""
    assert verification.ok, verification.to_json()
    paths = {item.kind: item.deliveries[0].path for item in verification.notifications}
    assert paths == {"arrival": "initiator", "tick": "tick"}


def test_a_release_deploys_over_the_previous_one_while_it_delivers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # GIVEN the previous release, synthesized by its own infra, stood up with its own
    # functions' code, its schema migrated, delivering through a PubNub origin
    commit, subject = previous_release(CHECKOUT)
    workdir = tmp_path_factory.mktemp("upgrade")
    release = extract_release(CHECKOUT, commit, subject, workdir)
    pubnub = GatedPubNub()
    pubnub.start()
    try:
        old = with_provider_settings(release_template(release), pubnub_origin=pubnub.url)
        new = with_provider_settings(synthesized_template(), pubnub_origin=pubnub.url)
        with rehearse(old, workdir / "stage", code=release.code) as stage:
            stage.invoke("FunctionsMigrateLauncher", {})
            if (release.code / "escalator" / "verification.py").exists():
                # (a release from escalator verify's on: proven as deployed, too)
                with traffic(stage, request_queue(stage)):
                    assert_verified(verified(stage))
            _deliver_across_the_deploy(stage, pubnub, new)
    finally:
        pubnub.release()
        pubnub.stop()


def _deliver_across_the_deploy(stage: Rehearsal, pubnub: GatedPubNub, new: dict[str, Any]) -> None:
    stage.put_secret("PubNub", {"publish_key": "pub-c-upgrade", "subscribe_key": "sub-c-up"})
    old_confirm, old_record = stage.function("FunctionsConfirm"), stage.function("FunctionsRecord")
    queue = request_queue(stage)
    producer = Producer(queue, sqs=stage.session.client("sqs", endpoint_url=stage.endpoint_url))
    now = int(time.time())

    def pubnub_start(process: str, *dues: int) -> None:
        producer.start(
            process,
            [
                {"channel": "pubnub", "at": due, "pubnub-channel": f"{process}-{position}"}
                for position, due in enumerate(dues)
            ],
        )

    with traffic(stage, queue) as stop:
        # Notifications stored minutes ago for the ticks (stored far out by the previous
        # release's initiator, then due now: as time would have passed) ...
        ticks = [process for phase in TICKS.values() for process in phase]
        for process in ticks:
            pubnub_start(process, now + 3600, now + 3601)
        wait_until(
            lambda: states(stage)["pending"] == 2 * len(ticks),
            timeout=30,
            what="the ticks' notifications stored",
        )
        fall_due(stage, TICKS["before"], after=6, spread=20)
        # ... and arrivals due within seconds, which the initiator's windows deliver
        now = int(time.time())
        for index in range(ARRIVALS):
            pubnub_start(f"arrival-{index}", now + 3 + 2 * index, now + 4 + 2 * index)
        wait_until(
            lambda: len(served(old_record)) >= 3,
            timeout=60,
            what="the previous release delivering",
        )

        # WHEN this tree deploys over it, in CloudFormation's order
        upgrade = Upgrade(stage, new)
        steps = upgrade.steps()
        trigger = next(step for step in steps if step.startswith("FunctionsMigrateTrigger"))
        for step in steps[: steps.index(trigger) + 1]:
            upgrade.step(step)
        # (the previous release's functions go on, against the schema just migrated)
        recorded_before = len(served(old_record))
        fall_due(stage, TICKS["during"], after=1, spread=3)
        wait_until(
            lambda: len(served(old_record)) > recorded_before,
            timeout=30,
            what="the previous release's Record after the migration",
        )
        # (and its initiator stores a start in the new schema)
        old_initiator = stage.function("FunctionsInitiator")
        pubnub_start("migrated-0", int(time.time()) + 4, int(time.time()) + 5)
        wait_until(
            lambda: any(
                "migrated-0" in json.dumps(event) for event in served_events(old_initiator)
            ),
            timeout=30,
            what="the previous release's initiator after the migration",
        )
        # (a window between its Confirm and its Record while those two are replaced: the
        # peer holds its publication, and with it the notifier's one sandbox, only for the
        # steps from Confirm to Record)
        rest = steps[steps.index(trigger) + 1 :]
        confirm = next(step for step in rest if step.startswith("FunctionsConfirm"))
        record = next(step for step in rest if step.startswith("FunctionsRecord"))
        for step in rest[: rest.index(confirm)]:
            upgrade.step(step)
        pubnub.armed = True
        fall_due(stage, TICKS["crossing"], after=1, spread=2)
        assert pubnub.held.wait(timeout=30), "no publication reached the gate"
        for step in rest[rest.index(confirm) : rest.index(record) + 1]:
            upgrade.step(step)
        pubnub.release()
        for step in rest[rest.index(record) + 1 :]:
            upgrade.step(step)
        # AND the ticks' last notifications fall due after the deploy
        fall_due(stage, TICKS["after"], after=3, spread=4)
        total = 2 * (len(ticks) + ARRIVALS + 1)
        try:
            wait_until(
                lambda: states(stage)["sent"] == total,
                timeout=90,
                interval=0.5,
                what=f"all {total} notifications sent",
            )
        except NotInTime as exc:
            raise AssertionError(f"{exc}:\n{unsent(stage)}") from None
        # AND escalator verify, run after the deploy, proves it
        verification = verified(stage)
        stop()
    stage.machine.settle(timeout=60)

    # THEN the schema is this tree's, each notification was published once, none is
    # left claimed or sending, and escalator verify proves the deployment
    migrated = query(stage.database_url, "SELECT filename FROM schema_migration ORDER BY version")
    assert [name for (name,) in migrated] == [m.filename for m in discover(default_sql_dir())]
    assert_verified(verification)
    published = Counter(publication.channel for publication in pubnub.publications)
    assert len(published) == total
    assert set(published.values()) == {1}
    assert states(stage) == Counter({NotificationState.SENT.value: total})
    # AND the deploy landed while deliveries were in flight: the previous release's
    # Record ran against the new schema, one window was confirmed by the previous
    # release and recorded by this one, and both releases delivered
    held = int(
        query(
            stage.database_url,
            "SELECT n.id FROM notification n JOIN process p ON p.id = n.process_ref"
            " WHERE p.process_id || '-' || n.position = %s",
            (pubnub.held_channel,),
        )[0][0]
    )
    new_confirm, new_record = stage.function("FunctionsConfirm"), stage.function("FunctionsRecord")
    assert held in served(old_confirm)
    assert held in served(new_record)
    assert held not in served(old_record)
    assert served(new_confirm)
    assert new_confirm.code is None
    assert old_confirm.code is not None
    claims = query(
        stage.database_url,
        "SELECT p.process_id || '-' || n.position, n.claim_owner FROM notification n"
        " JOIN process p ON p.id = n.process_ref WHERE NOT starts_with(p.process_id, 'verify-')",
    )
    owners = Counter(str(owner).split("-")[0] for _, owner in claims)
    near_due = [row for row in claims if row[0].startswith(("arrival-", "migrated-"))]
    assert owners["arrival"] == 2 * (ARRIVALS + 1), (near_due, function_errors(stage))
