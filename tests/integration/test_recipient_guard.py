"""The per-recipient guard: a delivery to a target covers other processes' notifications
to the same channel and target falling due within the window after it (they end
``coalesced``), decided in the database by the confirm step; a process's own
notifications always go out as scheduled, and a stopped process covers nothing. Only a
delivery that may have reached the person covers: the others wait while it is being
sent, and go out themselves when it does not."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devstack.local.pipeline import Pipeline
from devstack.peers.postgres import query
from devstack.peers.providers import Peers, running_peers
from escalator.channels.phone import TwilioCalls, load_settings
from escalator.config import DatabaseSettings
from escalator.database import Database, UnitOfWork
from escalator.limits import RECIPIENT_GUARD_SECONDS
from escalator.model import Delivery
from infra.timings import NOTIFIER_ATTEMPTS
from tests.support.contract_cases import email, phone, pubnub, start, stop
from tests.support.emf import emf_lines
from tests.support.state import wait_until_ended_or_blocked
from tests.support.steps import EXECUTION, RUN, Steps, claimed_ids

NUMBER = "+385911234567"
OTHER_NUMBER = "+385917654321"
OTHER_TICK = EXECUTION + "-next"


@pytest.fixture
def peers() -> Iterator[Peers]:
    with running_peers() as running:
        yield running


@pytest.fixture
def guarded(initiator_env: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The delivery steps' environment: every due notification in one claim, caller ids;
    the owner's connection, for the tests' own statements."""
    monkeypatch.setenv("CLAIM_BATCH_SIZE", "2000")
    query(
        database_url,
        "INSERT INTO property (property_key, property_value) VALUES ('caller-id-registry', %s)"
        " ON CONFLICT (property_key) DO UPDATE SET property_value = EXCLUDED.property_value",
        (json.dumps({"default": "+38512345678"}),),
    )
    return database_url


def add_processes(dsn: str, calls: list[tuple[str, str, int]], channel: str = "phone") -> None:
    """One process per (process id, target, seconds ago due), started in one statement:
    the guard, not the initiator, is under test here."""
    query(
        dsn,
        """
        WITH started AS (
            INSERT INTO process (process_id)
            SELECT id FROM unnest(%s::text[]) AS id
            RETURNING id AS ref, process_id
        )
        INSERT INTO notification (process_ref, position, channel, target, due_at)
        SELECT started.ref, 0, %s, wanted.number, now() - make_interval(secs => wanted.ago)
        FROM started JOIN unnest(%s::text[], %s::text[], %s::int[]) AS wanted(id, number, ago)
             ON wanted.id = started.process_id
        """,
        (
            [call[0] for call in calls],
            channel,
            [call[0] for call in calls],
            [call[1] for call in calls],
            [call[2] for call in calls],
        ),
    )


def deliver_claimed(
    steps: Steps, peers: Peers, *, execution: str = EXECUTION, workers: int = 4
) -> dict[int, dict[str, Any]]:
    """Claim what is due for ``execution`` and deliver it (``deliver``)."""
    claimed = claimed_ids(steps.claim(execution))
    return deliver(steps, peers, dict.fromkeys(claimed, execution), workers=workers)


def deliver(
    steps: Steps, peers: Peers, owners: dict[int, str], *, workers: int = 4
) -> dict[int, dict[str, Any]]:
    """Confirm each claimed notification for its owner, ``workers`` at a time (as the
    Map's iterations do), place each confirmed call through the real Twilio client at
    the local Twilio peer and record it; each notification's confirm answer."""
    calls = TwilioCalls(load_settings(peers.environment()))

    def one(notification_id: int) -> dict[str, Any]:
        execution = owners[notification_id]
        answer = steps.confirm(notification_id, execution=execution)
        if answer["deliver"]:
            receipt = calls.deliver(Delivery(**answer["delivery"]))
            steps.record(notification_id, execution=execution, receipt=receipt.to_event())
        return answer

    ids = sorted(owners)
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))


def claim_in_halves(dsn: str, count: int) -> dict[int, str]:
    """Half of ``count`` due notifications claimed by the tick, half by another (a tick
    overlapping the next, or a near-due window beside a tick): their owners."""
    owners: dict[int, str] = {}
    for owner in (EXECUTION, OTHER_TICK):
        with UnitOfWork(Database(DatabaseSettings(dsn=dsn))) as uow:
            claimed = uow.notifications.claim_due(
                owner=owner, lookahead=60, limit=count // 2, grace=60
            )
            uow.commit()
        owners.update({item.id: owner for item in claimed})
    return owners


def calls_to(peers: Peers) -> Counter[str]:
    return Counter(call.form["To"] for call in peers.twilio.calls)


def states(dsn: str) -> dict[str, int]:
    return dict(query(dsn, "SELECT state, count(*) FROM notification GROUP BY state"))


# (long: started first, so that the parallel run ends with short tests)
@pytest.mark.long
def test_a_thousand_processes_for_one_number_call_it_once(
    steps: Steps, guarded: str, initiator_env: str, peers: Peers
) -> None:
    # GIVEN a producer's bug: 1,000 processes, each calling one number, due together
    add_processes(guarded, [(f"order-{n}", NUMBER, 1) for n in range(1000)])

    # WHEN two executions, each holding half of them, deliver them at the same time,
    # 4 confirms at a time
    owners = claim_in_halves(initiator_env, 1000)
    assert sorted(Counter(owners.values()).values()) == [500, 500]
    answers = deliver(steps, peers, owners)

    # THEN the number is called once; the 999 others are coalesced, naming that call
    assert calls_to(peers) == {NUMBER: 1}
    assert states(guarded) == {"sent": 1, "coalesced": 999}
    (delivered,) = [n for n, answer in answers.items() if answer["deliver"]]
    assert query(
        guarded, "SELECT DISTINCT covered_by FROM notification WHERE covered_by IS NOT NULL"
    ) == [(delivered,)]
    # ... and each coalesced process is finished, as after a delivery
    assert query(guarded, "SELECT state, count(*) FROM process GROUP BY state") == [
        ("completed", 1000)
    ]


def test_two_numbers_are_called_once_each(
    steps: Steps, guarded: str, peers: Peers, capsys: pytest.CaptureFixture[str]
) -> None:
    add_processes(
        guarded,
        [(f"order-{n}", NUMBER if n % 2 else OTHER_NUMBER, 1) for n in range(40)],
    )

    # (four confirms at a time, as four sandboxes: each counts its own metrics)
    answers = deliver_claimed(steps, peers, workers=4)

    assert calls_to(peers) == {NUMBER: 1, OTHER_NUMBER: 1}
    assert states(guarded) == {"sent": 2, "coalesced": 38}
    # each coalesced one's answer names the delivery to its own number, and is counted
    cover = dict(
        query(
            guarded,
            "SELECT n.id, d.id FROM notification n JOIN notification d ON d.target = n.target"
            " AND d.state = 'sent' WHERE n.state = 'coalesced'",
        )
    )
    for notification_id, covered_by in cover.items():
        answer = answers[notification_id]
        assert (answer["deliver"], answer["covered_by"]) == (False, covered_by)
        # (confirmed while its cover was being sent, or after)
        assert answer["reason"] in (
            f"coalesced: covered by notification {covered_by}",
            f"coalesced: covered by notification {covered_by}, still being sent",
        )
    written = emf_lines(capsys)
    assert sum(sum(doc.get("NotificationsCoalesced", [])) for doc in written) == 38


@pytest.mark.parametrize(("window", "calls"), [("0", 2), ("1", 1)])
def test_a_window_of_zero_turns_the_guard_off(
    steps: Steps,
    guarded: str,
    peers: Peers,
    monkeypatch: pytest.MonkeyPatch,
    window: str,
    calls: int,
) -> None:
    # GIVEN two processes calling one number at the same second, and the window set
    monkeypatch.setenv("RECIPIENT_GUARD_SECONDS", window)
    add_processes(guarded, [("order-1", NUMBER, 1), ("order-2", NUMBER, 1)])

    # WHEN they are delivered, one after the other
    deliver_claimed(steps, peers, workers=1)

    # THEN with no window, both calls go out; with a window of a second, one
    assert calls_to(peers) == {NUMBER: calls}


def test_one_process_calls_its_number_as_often_as_it_scheduled(
    steps: Steps, guarded: str, peers: Peers
) -> None:
    # GIVEN the original's own example: one process calls one number twice, 12 s apart
    steps.submit(
        {
            "process-id": "restaurant-42",
            "action": "start",
            "notifications": [
                {"channel": "phone", "at": int(time.time()), "phone-number": NUMBER},
                {"channel": "phone", "at": int(time.time()) + 12, "phone-number": NUMBER},
            ],
        }
    )
    query(
        guarded,
        "UPDATE notification SET due_at = now() - make_interval(secs => 13 - 12 * position)",
    )

    # WHEN both are delivered (the second confirmed after the first was sent)
    answers = deliver_claimed(steps, peers, workers=1)

    # THEN the number is called twice: the guard never covers a process's own calls
    assert [answer["deliver"] for answer in answers.values()] == [True, True]
    assert calls_to(peers) == {NUMBER: 2}
    assert states(guarded) == {"sent": 2}


def test_the_window_holds_across_ticks_and_ends(steps: Steps, guarded: str, peers: Peers) -> None:
    # GIVEN one tick called the number
    add_processes(guarded, [("order-1", NUMBER, 1)])
    deliver_claimed(steps, peers)
    assert calls_to(peers) == {NUMBER: 1}

    # WHEN a later tick delivers other processes' calls due within the window after it,
    # one at its very end, and one due just past it
    add_processes(guarded, [("order-2", NUMBER, 0)])
    for process_id, after in (("order-2b", RECIPIENT_GUARD_SECONDS), ("order-3", 61)):
        query(
            guarded,
            "INSERT INTO process (process_id) VALUES (%s);"
            " INSERT INTO notification (process_ref, position, channel, target, due_at)"
            " SELECT id, 0, 'phone', %s,"
            "   (SELECT sending_at FROM notification WHERE state = 'sent')"
            "   + make_interval(secs => %s) FROM process WHERE process_id = %s",
            (process_id, NUMBER, after, process_id),
        )
    query(
        guarded,
        "UPDATE notification SET due_at = due_at - make_interval(secs => 62)"
        " WHERE state IN ('pending')",
    )
    query(guarded, "UPDATE notification SET sending_at = sending_at - make_interval(secs => 62)")
    second = deliver_claimed(steps, peers, execution=OTHER_TICK, workers=1)

    # THEN those within the window (its end included) are coalesced, the one past it is
    # called
    assert sorted(answer["deliver"] for answer in second.values()) == [False, False, True]
    assert calls_to(peers) == {NUMBER: 2}
    assert query(
        guarded,
        "SELECT p.process_id, n.state FROM notification n JOIN process p ON p.id = n.process_ref"
        " ORDER BY p.process_id",
    ) == [
        ("order-1", "sent"),
        ("order-2", "coalesced"),
        ("order-2b", "coalesced"),
        ("order-3", "sent"),
    ]


def test_a_stopped_process_covers_nothing(steps: Steps, guarded: str, peers: Peers) -> None:
    # GIVEN order-1's call went out, and then order-1 was stopped (the order confirmed)
    steps.submit(
        {
            "process-id": "order-1",
            "action": "start",
            "notifications": [
                {"channel": "phone", "at": int(time.time()), "phone-number": NUMBER},
                {"channel": "pubnub", "at": int(time.time()) + 3600, "pubnub-channel": "ch1"},
            ],
        }
    )
    deliver_claimed(steps, peers)
    steps.submit(stop("order-1"))
    assert query(guarded, "SELECT state FROM process") == [("stopped",)]

    # WHEN another process's call to the number falls due within the window
    add_processes(guarded, [("order-2", NUMBER, 0)])
    answers = deliver_claimed(steps, peers, execution=OTHER_TICK)

    # THEN it is called: a stopped process's delivery covers nothing
    assert [answer["deliver"] for answer in answers.values()] == [True]
    assert calls_to(peers) == {NUMBER: 2}


def test_console_lines_are_never_coalesced(steps: Steps, guarded: str) -> None:
    # GIVEN two processes writing the same console label (a development channel)
    add_processes(guarded, [("order-1", "order 1", 1), ("order-2", "order 1", 1)], "console")
    ids = claimed_ids(steps.claim())

    # WHEN both are confirmed, one after the other
    answers = [steps.confirm(notification_id)["deliver"] for notification_id in ids]

    # THEN both are written
    assert answers == [True, True]


def test_the_ticks_summary_names_a_coalesced_notification_and_its_cover(
    pipeline: Pipeline,
) -> None:
    # GIVEN two processes publishing to one PubNub channel a second from now
    due = int(time.time()) + 1
    pipeline.submit(
        start("order-1", pubnub("kitchen", at=due)), start("order-2", pubnub("kitchen", at=due))
    )

    # WHEN a tick of the synthesized state machine delivers them
    summary = json.loads(pipeline.machine.run()["output"])

    # THEN one is published, and the summary says the other was coalesced, and by which
    outcomes = {item["outcome"]: item for item in summary["window"]["notifications"]}
    assert sorted(outcomes) == ["coalesced", "sent"]
    assert outcomes["coalesced"]["covered_by"] == outcomes["sent"]["id"]
    assert [p.channel for p in pipeline.peers.pubnub.publications] == ["kitchen"]


# (long: it waits for its calls' due times, 7 s; started first, it ends no run)
@pytest.mark.long
def test_another_process_covers_a_process_first_call_never_its_repeats(
    pipeline: Pipeline,
) -> None:
    # GIVEN process Q calls a number now, and process P calls it 3 s and 7 s later (its
    # producer's escalation: call, then call again)
    due = int(time.time()) + 1
    pipeline.submit(
        start("order-q", phone(NUMBER, at=due)),
        start("order-p", phone(NUMBER, at=due + 3), phone(NUMBER, at=due + 7)),
    )

    # WHEN a tick of the synthesized state machine delivers them, through Twilio
    pipeline.machine.run()

    # THEN Q's call stands for P's first, and P's repeat goes out: two calls
    assert Counter(call.form["To"] for call in pipeline.peers.twilio.calls) == {NUMBER: 2}
    rows = query(
        pipeline.database_url,
        "SELECT p.process_id, n.state FROM notification n JOIN process p"
        " ON p.id = n.process_ref ORDER BY n.due_at",
    )
    assert rows == [("order-q", "sent"), ("order-p", "coalesced"), ("order-p", "sent")]


def test_a_call_twilio_refuses_covers_nothing_and_the_next_tick_calls_the_number(
    pipeline: Pipeline,
) -> None:
    # GIVEN Twilio refuses the first call to reach it (429 at each of its attempts), and
    # five processes call one number in the same second
    pipeline.peers.twilio.script.extend([429] * NOTIFIER_ATTEMPTS)
    due = int(time.time()) + 1
    pipeline.submit(*(start(f"order-{n}", phone(NUMBER, at=due)) for n in range(5)))

    # WHEN two ticks of the synthesized state machine run
    pipeline.machine.run()
    pipeline.machine.run()

    # THEN the number was called: the refused call covered nothing; the others went out
    # as one call, which covers them
    assert len(pipeline.peers.twilio.refused) == NOTIFIER_ATTEMPTS
    assert calls_to(pipeline.peers) == {NUMBER: 1}
    rows = query(
        pipeline.database_url,
        "SELECT n.state, c.state, n.error FROM notification n"
        " LEFT JOIN notification c ON c.id = n.covered_by ORDER BY n.id",
    )
    assert Counter((state, cover) for state, cover, _ in rows) == {
        ("failed", None): 1,
        ("sent", None): 1,
        ("coalesced", "sent"): 3,
    }
    # ... the refused one with Twilio's reason, and every process is finished
    (refused,) = [error for state, _, error in rows if state == "failed"]
    assert "429" in refused
    assert query(pipeline.database_url, "SELECT DISTINCT state FROM process") == [("completed",)]


def test_one_recipient_written_two_ways_is_called_and_mailed_once(pipeline: Pipeline) -> None:
    # GIVEN two processes calling one phone, once with the trunk 0 kept, and e-mailing one
    # address, once with its domain in capitals
    due = int(time.time()) + 1
    pipeline.submit(
        start("order-1", phone("+3850911110003", at=due), email("owner@example.com", at=due)),
        start("order-2", phone("+385911110003", at=due), email("owner@EXAMPLE.COM", at=due)),
    )

    # WHEN a tick of the synthesized state machine delivers them
    pipeline.machine.run()

    # THEN the phone rang once and one e-mail went out; the operator still sees each
    # target as its producer wrote it
    assert len(pipeline.peers.twilio.calls) == 1
    assert len(pipeline.peers.smtp.mails) == 1
    rows = query(
        pipeline.database_url,
        "SELECT channel, target, state FROM notification ORDER BY channel, target",
    )
    assert sorted((channel, state) for channel, _, state in rows) == [
        ("email", "coalesced"),
        ("email", "sent"),
        ("phone", "coalesced"),
        ("phone", "sent"),
    ]
    assert {target for _, target, _ in rows} == {
        "+3850911110003",
        "+385911110003",
        "owner@example.com",
        "owner@EXAMPLE.COM",
    }


def test_a_delivery_covers_only_its_own_channel(steps: Steps, guarded: str) -> None:
    # GIVEN a call to a number, and another process's text message to it a second later
    add_processes(guarded, [("order-1", NUMBER, 2)])
    add_processes(guarded, [("order-2", NUMBER, 1)], "sms")
    ids = claimed_ids(steps.claim())

    # WHEN both are confirmed, the call first
    answers = [steps.confirm(notification_id)["deliver"] for notification_id in ids]

    # THEN both go out: a call does not cover a text message
    assert answers == [True, True]


@pytest.mark.parametrize(
    ("outcome", "covers"),
    [
        ({"unknown": {"Error": "Lambda.ServiceException", "Cause": "lost"}}, True),
        ({"failure": {"Error": "PermanentDeliveryError", "Cause": "refused"}}, False),
    ],
    ids=["unknown", "failed"],
)
def test_a_delivery_that_may_have_reached_the_person_covers_a_refused_one_does_not(
    steps: Steps, guarded: str, outcome: dict[str, Any], covers: bool
) -> None:
    # GIVEN order-1's call was handed to Twilio and ended unknown (or refused: failed)
    add_processes(guarded, [("order-1", NUMBER, 2)])
    (first,) = claimed_ids(steps.claim())
    assert steps.confirm(first)["deliver"] is True
    steps.record(first, **outcome)

    # WHEN another process's call to the number falls due a second later
    add_processes(guarded, [("order-2", NUMBER, 1)])
    (second,) = claimed_ids(steps.claim(OTHER_TICK))
    answer = steps.confirm(second, execution=OTHER_TICK)

    # THEN an unknown call covers it; a refused one does not
    assert answer["deliver"] is not covers
    assert answer.get("covered_by") == (first if covers else None)


REFUSED = {"failure": {"Error": "PermanentDeliveryError", "Cause": "HTTP 400: refused"}}


def one_being_sent_and_two_coalesced(steps: Steps, guarded: str) -> tuple[int, int, int]:
    """order-1's call confirmed (being sent, no outcome yet), then order-2's and
    order-3's calls to the same number, due a second after it, confirmed: their ids."""
    add_processes(guarded, [("order-1", NUMBER, 2), ("order-2", NUMBER, 1), ("order-3", NUMBER, 1)])
    cover, second, third = claimed_ids(steps.claim())
    assert steps.confirm(cover)["deliver"] is True
    for covered in (second, third):
        assert steps.confirm(covered) == {
            "deliver": False,
            "reason": f"coalesced: covered by notification {cover}, still being sent",
            "covered_by": cover,
        }
    return cover, second, third


def rows(dsn: str, *ids: int) -> list[tuple[Any, ...]]:
    """Each notification's state, cover, whether finished, reason, and its process's state."""
    return query(
        dsn,
        "SELECT n.state, n.covered_by, n.finished_at IS NOT NULL, n.error, p.state"
        " FROM notification n JOIN process p ON p.id = n.process_ref"
        " WHERE n.id = ANY(%s) ORDER BY n.id",
        (list(ids),),
    )


def test_while_the_cover_is_being_sent_the_others_wait_and_its_failure_sends_them(
    steps: Steps, guarded: str, peers: Peers
) -> None:
    # GIVEN order-1's call is being sent, and two other processes' calls were coalesced
    # into it
    cover, second, third = one_being_sent_and_two_coalesced(steps, guarded)

    # THEN they wait for its outcome: not finished, and their processes stay active
    waiting = f"covered by notification {cover} (process order-1), handed to its provider at"
    for state, covered_by, finished, error, process in rows(guarded, second, third):
        assert (state, covered_by, finished, process) == ("coalesced", cover, False, "active")
        assert error.startswith(waiting)
        assert error.endswith(": waiting for its outcome")

    # WHEN Twilio refuses order-1's call
    steps.record(cover, **REFUSED)

    # THEN they are due again, as scheduled, saying why; their processes still active
    reason = f"its cover, notification {cover} (process order-1), ended failed: delivered after all"
    assert rows(guarded, second, third) == [("pending", None, False, reason, "active")] * 2

    # ... and the next tick calls the number once for both
    answers = deliver_claimed(steps, peers, execution=OTHER_TICK, workers=1)
    assert sorted(answers) == [second, third]
    assert calls_to(peers) == {NUMBER: 1}
    assert states(guarded) == {"failed": 1, "sent": 1, "coalesced": 1}
    assert query(guarded, "SELECT state, count(*) FROM process GROUP BY state") == [
        ("completed", 3)
    ]


def test_a_cover_that_was_sent_finishes_those_waiting_and_completes_their_processes(
    steps: Steps, guarded: str
) -> None:
    # GIVEN two calls coalesced into order-1's call while it was being sent
    cover, second, third = one_being_sent_and_two_coalesced(steps, guarded)

    # WHEN Twilio took it
    steps.record(cover, receipt={"provider_ref": "CA0001"})

    # THEN they are finished, naming their cover, and their processes completed
    for state, covered_by, finished, error, process in rows(guarded, second, third):
        assert (state, covered_by, finished, process) == ("coalesced", cover, True, "completed")
        assert error.startswith(f"covered by notification {cover} (process order-1)")
        assert "waiting" not in error


@pytest.mark.parametrize("end", ["lease lapsed", "released"])
def test_the_ticks_settle_what_waits_for_a_cover_that_ended_without_a_record(
    steps: Steps, guarded: str, end: str
) -> None:
    # GIVEN two calls coalesced into order-1's call while it was being sent
    cover, second, third = one_being_sent_and_two_coalesced(steps, guarded)

    # WHEN that call ends without its record step: its sending lease lapses (it may have
    # reached the person: unknown), or its confirm step failed and released it (its
    # notifier never ran), and the next tick claims
    if end == "lease lapsed":
        query(
            guarded,
            "UPDATE notification SET lease_until = now() - interval '1 second' WHERE id = %s",
            (cover,),
        )
    else:
        with UnitOfWork(Database(DatabaseSettings(dsn=guarded))) as uow:
            assert uow.notifications.release_unconfirmed(cover, owner=EXECUTION, run=RUN)
            uow.commit()
    claimed = claimed_ids(steps.claim(OTHER_TICK))

    # THEN it settles them: finished (their processes completed) when the cover may have
    # reached the person; due again, and claimed with the cover, when it never left
    if end == "lease lapsed":
        assert claimed == []
        assert [(row[0], row[2], row[4]) for row in rows(guarded, second, third)] == [
            ("coalesced", True, "completed")
        ] * 2
    else:
        assert claimed == [cover, second, third]
        assert [row[0] for row in rows(guarded, second, third)] == ["claimed"] * 2


def test_a_stopped_process_waiting_for_a_cover_that_failed_is_cancelled(
    steps: Steps, guarded: str
) -> None:
    # GIVEN two calls coalesced into order-1's call while it was being sent, and order-2
    # stopped meanwhile (its order confirmed)
    cover, second, third = one_being_sent_and_two_coalesced(steps, guarded)
    steps.submit(stop("order-2"))

    # WHEN order-1's call is refused
    steps.record(cover, **REFUSED)

    # THEN order-2's call is cancelled, saying why; order-3's is due again
    assert [row[0] for row in rows(guarded, second, third)] == ["cancelled", "pending"]
    assert rows(guarded, second)[0][3] == (
        f"its cover, notification {cover} (process order-1), ended failed:"
        " not delivered, the process is stopped"
    )


def test_a_cover_refused_while_a_confirm_coalesces_into_it_still_sends_that_one(
    steps: Steps, guarded: str
) -> None:
    # GIVEN order-1's call is being sent, and order-2's confirm has just coalesced into
    # it, its transaction still open
    add_processes(guarded, [("order-1", NUMBER, 2), ("order-2", NUMBER, 1)])
    cover, second = claimed_ids(steps.claim())
    assert steps.confirm(cover)["deliver"] is True
    with UnitOfWork(Database(DatabaseSettings(dsn=guarded))) as uow:
        coalesced = uow.notifications.coalesce_if_covered(
            second, owner=EXECUTION, window=RECIPIENT_GUARD_SECONDS, channels=["phone"]
        )
        assert coalesced is not None
        assert coalesced.waiting

        # WHEN Twilio's refusal of order-1's call is recorded meanwhile
        recording = threading.Thread(target=steps.record, args=(cover,), kwargs=REFUSED)
        recording.start()
        wait_until_ended_or_blocked(
            recording, guarded, what="the record step ending or waiting for the confirm"
        )
        uow.commit()
    recording.join(10)

    # THEN the record waited for the confirm, and order-2's call is due again
    assert rows(guarded, cover, second)[1][0] == "pending"
