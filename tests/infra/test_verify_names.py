"""What ``escalator verify`` looks up in a deployed stack is in the synthesized template:
the output naming the request queue, and exactly one function of each name it looks for
(by the start of its logical id), running the handler it expects."""

from __future__ import annotations

from typing import Any

from devstack.emulation.template import resources
from escalator.verification import CONSOLE_NOTIFIER, INITIATOR, QUEUE_OUTPUT


def test_the_stack_has_what_verify_looks_up(template: dict[str, Any]) -> None:
    assert QUEUE_OUTPUT in template["Outputs"]
    functions = resources(template, "AWS::Lambda::Function")

    def named(prefix: str) -> list[str]:
        return [logical_id for logical_id in functions if logical_id.startswith(prefix)]

    (console,) = named(CONSOLE_NOTIFIER)
    (initiator,) = named(INITIATOR)
    assert functions[console]["Properties"]["Handler"] == "escalator.handlers.notifier.handler"
    assert functions[initiator]["Properties"]["Handler"] == "escalator.handlers.initiator.handler"
    # (the initiator's lookahead, which verify reads, is set by the template)
    assert "LOOKAHEAD_SECONDS" in functions[initiator]["Properties"]["Environment"]["Variables"]
