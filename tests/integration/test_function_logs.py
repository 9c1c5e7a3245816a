"""What a function logs lands in its CloudWatch log group, as on Lambda, and an operator
reads it there (FilterLogEvents): the console notifier's line names the claim each
delivery went out under, which tells a tick's delivery from the initiator's.

The synthesized state machine run by moto, the real handlers (in-process, and in a
process of their own as the rehearsal runs them), real PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from devstack.emulation.context import default_log_group
from devstack.local.pipeline import Pipeline
from devstack.peers.postgres import query
from escalator.channels.console import LOGGED
from tests.support.contract_cases import start


def console_lines(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The console notifier's lines, read from its log group as an operator reads them."""
    group = default_log_group(pipeline.machine.function_named("FunctionsNotifierConsole"))
    events = pipeline.machine.logs.filter_log_events(logGroupName=group)["events"]
    lines = [json.loads(event["message"]) for event in events]
    return [line for line in lines if line["message"] == LOGGED]


def claim_owner(pipeline: Pipeline, label: str) -> str:
    ((owner,),) = query(
        pipeline.database_url, "SELECT claim_owner FROM notification WHERE target = %s", (label,)
    )
    return str(owner)


def test_the_console_notifier_logs_each_delivery_in_its_log_group_with_its_claims_owner(
    pipeline: Pipeline,
) -> None:
    # GIVEN a console notification due now, left to the ticks
    due = int(time.time())
    pipeline.submit(start("by-a-tick", {"channel": "console", "at": due, "label": "ticked"}))

    # WHEN a tick delivers it
    tick = pipeline.machine.run({"period_seconds": 60})

    # AND a near-due arrival is delivered by the window the initiator starts for it
    pipeline.start_near_due()
    arrival = {"channel": "console", "at": int(time.time()) + 1, "label": "arrived"}
    pipeline.submit(start("on-arrival", arrival))
    pipeline.wait_for(lambda: len(console_lines(pipeline)) == 2)

    # THEN the notifier's log group has one line for each, naming the claim it went out
    # under (the tick's execution; the arrival's own), when it went out and its due time
    ticked, arrived = console_lines(pipeline)
    assert (ticked["label"], ticked["owner"], ticked["due_at"]) == (
        "ticked",
        tick["executionArn"],
        due,
    )
    assert ticked["owner"] == claim_owner(pipeline, "ticked")
    assert (arrived["label"], arrived["due_at"]) == ("arrived", arrival["at"])
    assert arrived["owner"].startswith("arrival-")
    assert arrived["owner"] == claim_owner(pipeline, "arrived")
    assert ticked["delivered_at"] >= due
    assert arrived["delivered_at"] >= arrival["at"]
    # AND the lines are the function's own (Powertools' JSON, with its Lambda context)
    assert {ticked["function_name"], arrived["function_name"]} == {
        pipeline.machine.function_named("FunctionsNotifierConsole")
    }


def test_a_function_in_a_process_of_its_own_hands_back_what_it_wrote() -> None:
    # GIVEN the console notifier in a sandbox process, as the rehearsal runs each function
    delivery = {
        "notification_id": 7,
        "process_id": "restaurant-42",
        "channel": "console",
        "target": "in a sandbox",
        "due_at": 1_800_000_000,
        "owner": "arrival-m-1",
    }

    # WHEN it is invoked
    run = subprocess.run(
        [sys.executable, "-m", "devstack.emulation.sandbox", "escalator.handlers.notifier.handler"],
        input=json.dumps(delivery) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    # THEN its answer carries the lines it wrote, each stamped, for its log group (and
    # its stderr has them too)
    (answer,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert answer["ok"] is True, answer
    lines = [json.loads(text) for _, text in answer["logs"]]
    (logged,) = [line for line in lines if line["message"] == LOGGED]
    assert (logged["label"], logged["owner"]) == ("in a sandbox", "arrival-m-1")
    assert all(isinstance(at, float) for at, _ in answer["logs"])
    assert LOGGED in run.stderr
