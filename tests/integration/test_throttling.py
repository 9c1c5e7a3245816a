"""Lambda throttles a function whose reserved concurrency is all busy; the delivery
pipeline retries the throttled steps and loses nothing."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.support.contract_cases import pubnub_starts
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.long(seconds=12)


def test_a_burst_beyond_the_reservations_is_throttled_and_still_delivered_once(
    pipeline: Pipeline,
) -> None:
    # GIVEN Confirm and Record with eight sandboxes each, under a Map of 40 at once, and
    # 250 notifications due in the same second (two claims, of 200 and 50: a hand-over)
    steps = [
        pipeline.machine.function_named(prefix)
        for prefix in ("FunctionsConfirm", "FunctionsRecord")
    ]
    for name in steps:
        pipeline.lambdas.reserve(name, 8)
    due = int(time.time()) + 3
    pipeline.submit(*pubnub_starts(250, due))

    # WHEN one execution delivers them
    description = pipeline.machine.run(timeout=600)

    # THEN Lambda throttled, and still every one was delivered exactly once, none lost
    assert description["status"] == "SUCCEEDED"
    assert sum(pipeline.lambdas.throttles.get(name, 0) for name in steps) > 0
    published = Counter(p.channel for p in pipeline.peers.pubnub.publications)
    assert len(published) == 250
    assert set(published.values()) == {1}
    assert Counter(pipeline.states()) == {"sent": 250}
