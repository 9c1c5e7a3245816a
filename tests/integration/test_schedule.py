"""The schedule fires as EventBridge Scheduler may, at any moment within its period, and
the ticks' lookahead absorbs it: no pre-scheduled notification is claimed after it is
due, through the synthesized definitions executed by moto."""

from __future__ import annotations

import json
import threading
import time

import pytest

from devstack.emulation.schedule import Schedule
from devstack.peers.postgres import query
from tests.support.contract_cases import pubnub, start
from tests.support.pipeline import Pipeline

# Long: started first, so that the parallel run ends with the short tests.
pytestmark = pytest.mark.long

PERIOD = 2
# A seed whose second tick fires more than a period after the first (3.4 s apart): a
# tick that looked only one period ahead would leave what falls due in between late.
SEED = 1


def test_pre_scheduled_notifications_are_claimed_before_due_whenever_the_ticks_fire(
    pipeline: Pipeline,
) -> None:
    # GIVEN a jittered schedule of 2 s, and one notification due each second from 1 s
    # after its first period begins to 6 s after
    begins = int(time.time()) + 2
    schedule = Schedule(PERIOD, seed=SEED, start=begins)
    moments = [schedule.moment(index) - begins for index in range(4)]
    assert moments[1] - moments[0] > PERIOD  # (the seed's gap, as described above)
    dues = [begins + second for second in range(1, 7)]
    pipeline.submit(*(start(f"restaurant-{due}", pubnub(f"ch-{due}", at=due)) for due in dues))

    # WHEN the schedule starts ticks for four periods
    stop = threading.Event()
    ticking = threading.Thread(
        target=schedule.run,
        args=(lambda: pipeline.machine.start({"period_seconds": PERIOD}), stop),
    )
    ticking.start()
    try:
        pipeline.wait_for(lambda: len(schedule.fired) == 4, timeout=30)
    finally:
        stop.set()
        ticking.join()
    ticks = pipeline.machine.settle(timeout=60)

    # THEN each notification was delivered once, by a tick that started before it was due
    assert pipeline.states() == ["sent"] * len(dues)
    assert sorted(p.channel for p in pipeline.peers.pubnub.publications) == sorted(
        f"ch-{due}" for due in dues
    )
    due_of = dict(
        query(pipeline.database_url, "SELECT id, extract(epoch FROM due_at) FROM notification")
    )
    delivered_by: dict[int, float] = {}
    for tick in ticks:
        # (a tick that claimed nothing ends at "Nothing due", without a window)
        window = json.loads(tick["output"]).get("window", {})
        for item in window.get("notifications", []):
            delivered_by[item["id"]] = tick["startDate"].timestamp()
    assert sorted(delivered_by) == sorted(due_of)
    late_claims = {i: due_of[i] for i, started in delivered_by.items() if started >= due_of[i]}
    assert late_claims == {}
