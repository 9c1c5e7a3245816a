"""Property: whatever body arrives, the initiator never raises and stores only valid processes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.emulation.events import lambda_context, sqs_event, sqs_record
from devstack.peers.postgres import PostgresServer, query
from escalator.channels import CHANNELS
from escalator.handlers import initiator
from escalator.limits import MAX_PROCESS_ID_LENGTH

# Long: started first, so that the parallel run ends with the short tests.
pytestmark = pytest.mark.long

# (the stress suite's flood runs 10,000 generated bodies; here enough to find a crash)
EXAMPLES = 500

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Values that are sometimes right for a field: they reach the deeper rules.
process_ids = (
    st.sampled_from(["restaurant-1", "restaurant-2", "", " ", "restaurant-1 ", "rest\u0430urant-1"])
    | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7F), max_size=130)
    | st.text(max_size=140)
)
targets = st.sampled_from(
    ["+385911234567", "+14155550123", "+38500000", "owner@example.com", "a@b", "ch-1", "a,b", ""]
) | st.text(max_size=30)
ats = (
    st.integers(min_value=-10, max_value=2_000_000_000)
    | st.floats(allow_nan=True)
    | st.booleans()
    | st.text(max_size=5)
)
notifications = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.sampled_from([*CHANNELS, "fax"]) | json_values,
        "at": ats,
        "phone-number": targets,
        "email": targets,
        "pubnub-channel": targets,
    },
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "process-id": process_ids | json_values,
        "action": st.sampled_from(["start", "stop", "pause"]) | json_values,
        "notifications": st.lists(notifications | json_values, max_size=4) | json_values,
    },
).map(json.dumps)

VALID_TARGETS = {
    "phone": ["+385911234567", "+14155550123", "+442071838750"],
    "sms": ["+385911234567", "+14155550123"],
    "email": ["owner@example.com", "kitchen@restaurant.hr"],
    "pubnub": ["ch13234", "orders-42"],
}


@st.composite
def valid_notification(draw: st.DrawFn) -> dict[str, Any]:
    channel = draw(st.sampled_from(sorted(VALID_TARGETS)))
    return {
        "channel": channel,
        "at": int(time.time()) + draw(st.integers(min_value=-600, max_value=3600)),
        CHANNELS[channel].target_field: draw(st.sampled_from(VALID_TARGETS[channel])),
    }


# Valid starts and stops over a few process ids, so processes start, stop and restart.
restaurants = st.integers(min_value=1, max_value=20).map(lambda number: f"restaurant-{number}")
valid_requests = st.fixed_dictionaries(
    {
        "process-id": restaurants,
        "action": st.just("start"),
        "notifications": st.lists(valid_notification(), min_size=1, max_size=4),
    }
) | st.fixed_dictionaries({"process-id": restaurants, "action": st.just("stop")})
# What a hostile producer sends: integers longer than Python converts (a ValueError, not
# a JSONDecodeError), nesting deeper than the parser recurses, escapes of lone surrogates
# and invalid escapes, and keys given twice (the last would win).
PUBNUB_START = (
    '{{"process-id": "r", "action": "start", "notifications":'
    ' [{{"channel": "pubnub", "pubnub-channel": "c", "at": {}}}]}}'
)
hostile = (
    st.integers(min_value=4301, max_value=6000).map(
        lambda digits: PUBNUB_START.format("9" * digits)
    )
    | st.integers(min_value=1, max_value=5000).map(
        lambda depth: '{"process-id": ' + "[" * depth + "]" * depth + ', "action": "stop"}'
    )
    | st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\u0041", "\\x41", "\\u12", "\\"]).map(
        lambda escape: '{"process-id": "r' + escape + '", "action": "stop"}'
    )
    | valid_requests.map(lambda document: json.dumps(document)[:-1] + ', "action": "start"}')
    | valid_requests.map(lambda document: '{"action": "stop", ' + json.dumps(document)[1:])
)
bodies = (
    valid_requests.map(json.dumps)
    | hostile
    | requests
    | json_values.map(json.dumps)
    | st.text()
    | st.binary().map(lambda raw: raw.decode("latin-1"))
)


@pytest.fixture(scope="module")
def property_database(postgres: PostgresServer) -> Iterator[str]:
    """One database for all examples: state accumulates, as it does in production."""
    with postgres.scratch_database() as name:
        yield postgres.dsn(name)


def test_arbitrary_bodies_never_crash_and_leave_only_valid_processes(
    property_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", property_database)
    context = lambda_context()
    handled: list[str] = []

    # (derandomized: the same bodies every run, so the mix checked below, with its floor
    # of starts, never depends on luck; the full stress suite explores further)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies, group=st.sampled_from(["g1", "g2"]))
    def handle_anything(body: str, group: str) -> None:
        record = sqs_record(body, group=group)
        response: Any = initiator.handler(sqs_event(record), context)
        assert response == {"batchItemFailures": []}
        handled.append(record["messageId"])

    handle_anything()

    # Every message was recorded once, whatever it held.
    assert len(handled) >= EXAMPLES
    assert query(property_database, "SELECT count(*) FROM request_log") == [(len(handled),)]
    outcomes = dict(
        query(property_database, "SELECT outcome, count(*) FROM request_log GROUP BY 1")
    )
    # The mix reached every path, so the check below is not vacuous.
    assert {"started", "stopped", "ignored", "rejected"} <= outcomes.keys()
    reasons = [row[0] for row in query(property_database, "SELECT reason FROM request_log")]
    assert any(reason and "twice in one object" in reason for reason in reasons)
    assert any(reason and "not usable JSON" in reason for reason in reasons)
    assert any(reason and "may hold only printable ASCII" in reason for reason in reasons)
    assert outcomes["started"] >= 10
    assert_only_valid_processes(property_database)


def assert_only_valid_processes(dsn: str) -> None:
    processes = query(dsn, "SELECT id, process_id, state FROM process")
    for _, process_id, _ in processes:  # what SQS takes as a MessageGroupId
        assert re.fullmatch(r"[!-~]+", process_id)
        assert len(process_id) <= MAX_PROCESS_ID_LENGTH
    active = [process_id for _, process_id, state in processes if state == "active"]
    assert len(active) == len(set(active))
    rows = query(
        dsn,
        "SELECT process_ref, channel, target, extract(epoch FROM due_at)::bigint, state, error"
        " FROM notification",
    )
    assert {ref for ref, *_ in rows} == {ref for ref, _, _ in processes}
    latest_allowed = time.time() + 31 * 86400
    for _, channel, target, due, state, error in rows:
        assert channel in CHANNELS
        assert 0 <= due <= latest_allowed
        if state == "rejected":  # an unusable target or already too late, with the reason
            assert error
        else:
            assert CHANNELS[channel].target_problem(target) is None
