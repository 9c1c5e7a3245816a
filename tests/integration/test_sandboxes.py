"""The rehearsal's sandbox processes across a deploy: what a deploy replaces finishes the
invocation under way, and hands the invocations still waiting for their turn to its
successor, as Lambda serves every invocation during an update."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from devstack.polling import wait_until
from devstack.rehearsal.deployment import FunctionSpec, RehearsalError, Sandbox, close_sandboxes

SPEC = FunctionSpec(
    logical_id="FunctionsConfirm",
    handler="tests.support.sandbox_handlers.answer_when_released",
    environment={},
    timeout=30,
    reserved=None,
)


class Sandboxes:
    """Starts sandboxes of ``SPEC`` writing to one log; ends them all at the end."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.started: list[Sandbox] = []

    def start(self) -> Sandbox:
        sandbox = Sandbox(SPEC, {"PATH": "/usr/bin:/bin"}, self.log)
        self.started.append(sandbox)
        return sandbox


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[Sandboxes]:
    with (tmp_path / "functions.log").open("w") as log:
        made = Sandboxes(log)
        try:
            yield made
        finally:
            close_sandboxes(made.started)


def test_a_replaced_sandbox_finishes_its_invocation_and_hands_on_those_that_wait(
    tmp_path: Path, sandboxes: Sandboxes
) -> None:
    old = sandboxes.start()
    (first,) = [old.invoke({"label": "warm"})["payload"]["pid"]]
    # GIVEN an invocation under way in the old sandbox (it answers once released)
    release = tmp_path / "release"
    answers: dict[str, Any] = {}
    under_way = threading.Thread(
        target=lambda: answers.update(under_way=old.invoke({"label": "a", "release": str(release)}))
    )
    under_way.start()
    wait_until(old._lock.locked, timeout=30)

    # WHEN a deploy starts its successor meanwhile (the replacement waits for the turn of
    # the invocation under way), and an invocation routed to the old sandbox before the
    # deploy takes its turn only after it
    new = sandboxes.start()
    replacing = threading.Thread(target=old.replace, args=(new,))
    replacing.start()
    wait_until(lambda: old.successor is new, timeout=30)
    release.touch()
    replacing.join(timeout=30)
    waited = old.invoke({"label": "b"})
    under_way.join(timeout=30)

    # THEN the one under way finished in the old process, the other was served by the new
    assert answers["under_way"]["payload"] == {"label": "a", "pid": first}
    assert waited["ok"], waited
    assert waited["payload"]["label"] == "b"
    assert waited["payload"]["pid"] not in (first, None)
    assert [event["label"] for event, _ in new.served] == ["b"]


def test_a_sandbox_removed_without_a_successor_refuses_an_invocation(
    sandboxes: Sandboxes,
) -> None:
    # GIVEN a function the deploy removed (no successor)
    removed = sandboxes.start()
    removed.end_input()

    # WHEN it is invoked, THEN the rehearsal says so
    with pytest.raises(RehearsalError, match="FunctionsConfirm: invoked after it was removed"):
        removed.invoke({"label": "late"})
