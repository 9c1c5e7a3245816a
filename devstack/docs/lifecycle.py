"""The lifecycles of a notification and of a process as pictures: Mermaid state diagrams
drawn from the transition tables of ``escalator.lifecycle``, which the repository takes
its states from and PostgreSQL enforces.

``python -m devstack.lifecycle_diagram`` (``make docs``) writes ``docs/lifecycle.md``; a
test fails when the committed file no longer matches the tables.
"""

from __future__ import annotations

import sys
from typing import Any

from devstack import PROJECT
from devstack.docs import generated
from escalator.lifecycle import FORBIDDEN_TRANSITION, NOTIFICATION, PROCESS, Lifecycle

DOCUMENT = PROJECT / "docs" / "lifecycle.md"

_HEADER = f"""\
# The lifecycles of a notification and of a process

Generated from the transition tables of `lambdas/escalator/lifecycle.py` (`make docs`; a
test fails when this file no longer matches them). The repository takes every state it
writes from those tables, and PostgreSQL refuses any change of state they do not list
(`sql/0010_lifecycle_transitions.sql`, SQLSTATE `{FORBIDDEN_TRANSITION}`, naming the row and both
states). Each arrow is labelled with the events that move a row along it; *guarded*:
PostgreSQL also checks the row (the table under the picture says what). GitHub and most
Markdown viewers draw the diagrams; <https://mermaid.live> draws them too. The overview is
in [design.md](design.md); back to the [README](../README.md).

"""

_SECTIONS: tuple[tuple[Lifecycle[Any, Any], str, str], ...] = (
    (
        NOTIFICATION,
        "A notification",
        "Stored `pending` by the initiator, or `rejected` when its target is unusable. A "
        "`coalesced` notification whose cover is still being sent waits for its outcome, "
        "unfinished (no `finished_at`): a cover that may have reached the person (`sent`, "
        "`unknown`) finishes it without a change of state; any other end uncovers it.",
    ),
    (
        PROCESS,
        "A process",
        "Started `active` by a start request; a process id can be started again once its "
        "process has ended.",
    ),
)


def mermaid(lifecycle: Lifecycle[Any, Any]) -> str:
    """A Mermaid state diagram of ``lifecycle``: one arrow per pair of states, labelled
    with its events."""
    lines = ["stateDiagram-v2"]
    lines += [f"    [*] --> {state}" for state in lifecycle.initial]
    for source, target in _pairs(lifecycle):
        events = ", ".join(str(event) for event in lifecycle.events_between(source, target))
        guarded = any(
            item.guard is not None
            for item in lifecycle.transitions
            if (item.source, item.target) == (source, target)
        )
        lines.append(f"    {source} --> {target}: {events}{' (guarded)' if guarded else ''}")
    lines += [f"    {state} --> [*]" for state in lifecycle.final()]
    return "\n".join(lines) + "\n"


def events_table(lifecycle: Lifecycle[Any, Any]) -> str:
    """Each event, the transitions it causes (and their guards), and what it is."""
    rows = ["| event | transitions | what happens |", "|---|---|---|"]
    for event, text in lifecycle.events.items():
        moves = [
            f"{item.source} → {item.target}" + (f", only {item.guard}" if item.guard else "")
            for item in lifecycle.transitions
            if item.event == event
        ]
        rows.append(f"| `{event}` | {'; '.join(moves)} | {text} |")
    return "\n".join(rows) + "\n"


def document() -> str:
    """The whole of ``docs/lifecycle.md``."""
    sections = [
        f"## {title}\n\n{text}\n\n```mermaid\n{mermaid(lifecycle)}```\n\n{events_table(lifecycle)}"
        for lifecycle, title, text in _SECTIONS
    ]
    return _HEADER + "\n".join(sections)


def _pairs(lifecycle: Lifecycle[Any, Any]) -> list[tuple[Any, Any]]:
    """Each (from, to) pair once, in the order the table first lists it."""
    return list(dict.fromkeys((item.source, item.target) for item in lifecycle.transitions))


def main() -> int:
    """Write ``docs/lifecycle.md`` from the transition tables."""
    return generated.write(DOCUMENT, document())


if __name__ == "__main__":
    sys.exit(main())
