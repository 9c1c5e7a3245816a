"""The delivery state machines as pictures: Mermaid flowcharts drawn from the definitions
the CDK app synthesizes (the tick, and the delivery window it starts), so the pictures
in ``docs/`` are the machines that run.

``python -m devstack.docs.diagram`` (``make docs``) writes ``docs/state-machine.md``; a test
fails when the committed file no longer matches the synthesized definition.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from devstack import PROJECT
from devstack.docs import generated
from devstack.emulation.template import (
    EXPRESS,
    STANDARD,
    state_machine_definition,
    synthesized_template,
)

DOCUMENT = PROJECT / "docs" / "state-machine.md"

_HEADER = """\
# The delivery state machines

Generated from the definitions the CDK app synthesizes (`make docs`; a test fails when
this file no longer matches them). Solid arrows are the normal path, labelled arrows the
choices, dotted arrows the errors a state catches; a state's retries are listed in it.
GitHub and most Markdown viewers draw the charts; <https://mermaid.live> draws them too.

"""

_SECTIONS = (
    (
        STANDARD,
        "The tick (Standard)",
        "Started by the schedule every minute: what the console shows of each tick. It "
        "claims what falls due, starts a delivery window with the claim and waits for it "
        "(a synchronous start, `aws-sdk:sfn:startSyncExecution`: how AWS runs a nested "
        "Express workflow), and ends with a summary of what became of each "
        "notification.",
    ),
    (
        EXPRESS,
        "The delivery window (Express)",
        "Started by a tick (and by the initiator for notifications that arrive near their "
        "due time): every notification of its input in parallel, each waited for, "
        "confirmed, delivered and recorded. Its output is one line per notification: its "
        "id and outcome.",
    ),
)


def mermaid(machine: dict[str, Any]) -> str:
    """A Mermaid flowchart of ``machine`` (an Amazon States Language definition)."""
    lines = ["flowchart TD", "    start((start))"]
    lines += [f"    start --> {_node(machine['StartAt'])}"]
    lines += _states(machine["States"], indent="    ")
    return "\n".join(lines) + "\n"


def document(template: dict[str, Any]) -> str:
    """The whole of ``docs/state-machine.md`` for ``template``."""
    sections = [
        f"## {title}\n\n{text}\n\n```mermaid\n"
        f"{mermaid(state_machine_definition(template, machine_type))}```\n"
        for machine_type, title, text in _SECTIONS
    ]
    return _HEADER + "\n".join(sections)


def _states(states: dict[str, Any], indent: str) -> list[str]:
    lines: list[str] = []
    for name, state in states.items():
        node = _node(name)
        kind = state["Type"]
        if kind == "Map":
            inner = state["ItemProcessor"]
            lines.append(f'{indent}subgraph {node}["{name} (Map, at most '
                         f'{state.get("MaxConcurrency", "any")} at once)"]')  # fmt: skip
            lines.append(f"{indent}    direction TB")
            lines.append(f"{indent}    {node}_start((each item)) --> {_node(inner['StartAt'])}")
            lines += _states(inner["States"], indent + "    ")
            lines.append(f"{indent}end")
        else:
            lines.append(f"{indent}{node}{_shape(kind, _label(name, state))}")
        lines += _edges(node, state, indent)
    return lines


def _edges(node: str, state: dict[str, Any], indent: str) -> list[str]:
    lines = []
    for rule in state.get("Choices", []):
        lines.append(f'{indent}{node} -->|"{_condition(rule)}"| {_node(rule["Next"])}')
    if "Default" in state:
        lines.append(f'{indent}{node} -->|"otherwise"| {_node(state["Default"])}')
    if "Next" in state:
        lines.append(f"{indent}{node} --> {_node(state['Next'])}")
    for catch in state.get("Catch", []):
        errors = ", ".join(catch["ErrorEquals"])
        lines.append(f'{indent}{node} -.->|"{errors}"| {_node(catch["Next"])}')
    return lines


def _label(name: str, state: dict[str, Any]) -> str:
    parts = [name]
    resource = str(state.get("Resource", ""))
    if state["Type"] == "Task" and ":function:" in resource:
        function = resource.rsplit(":", 1)[-1]
        parts.append(re.sub(r"[0-9A-F]{8}$", "", function.removeprefix("Functions")) + " λ")
    elif state["Type"] == "Task":
        parts.append(resource.split(":::", 1)[-1])
    if state["Type"] == "Wait":
        parts.append("until " + str(state.get("TimestampPath") or state.get("Timestamp", "")))
    for retry in state.get("Retry", []):
        errors = ", ".join(retry["ErrorEquals"])
        parts.append(f"retry {errors}: {retry.get('MaxAttempts', 3)}x")
    return "<br/>".join(part.replace('"', "'") for part in parts)


def _shape(kind: str, label: str) -> str:
    if kind == "Choice":
        return '{"' + label + '"}'
    if kind in ("Succeed", "Fail"):
        return '(["' + label + '"])'
    return '["' + label + '"]'


def _condition(rule: dict[str, Any]) -> str:
    for key, value in rule.items():
        if key not in ("Variable", "Next"):
            return f"{rule.get('Variable', '')} {key} {json.dumps(value)}".replace('"', "'")
    return "?"


def _node(name: str) -> str:
    return "s_" + re.sub(r"[^A-Za-z0-9]", "_", name)


def main() -> int:
    """Write ``docs/state-machine.md`` from the synthesized template."""
    return generated.write(DOCUMENT, document(synthesized_template()))


if __name__ == "__main__":
    sys.exit(main())
