"""The documentation shows the machine that runs: the state machine picture in docs/ is
drawn from the synthesized definition, the lifecycles' from their transition tables, and
the README points only at what exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from devstack.diagram import DOCUMENT, document, mermaid
from devstack.lifecycle_diagram import DOCUMENT as LIFECYCLE_DOCUMENT
from devstack.lifecycle_diagram import document as lifecycle_document
from devstack.lifecycle_diagram import mermaid as lifecycle_chart
from devstack.template import EXPRESS, STANDARD, state_machine_definition
from escalator.lifecycle import NOTIFICATION, PROCESS, Lifecycle

ROOT = Path(__file__).resolve().parents[2]


def test_the_state_machine_picture_is_drawn_from_the_synthesized_definition(
    template: dict[str, Any],
) -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == document(template), "run `make docs`"


@pytest.mark.parametrize("machine_type", [STANDARD, EXPRESS])
def test_the_picture_has_every_state_and_every_transition(
    template: dict[str, Any], machine_type: str
) -> None:
    machine = state_machine_definition(template, machine_type)
    chart = mermaid(machine)
    maps = [state for state in machine["States"].values() if state["Type"] == "Map"]
    inner = {
        name: state for each in maps for name, state in each["ItemProcessor"]["States"].items()
    }
    for name in [*machine["States"], *inner]:
        assert f'["{name}' in chart or f'{{"{name}' in chart or f'(["{name}' in chart, name
    arrows = chart.count("-->") + chart.count("-.->")
    transitions = sum(
        ("Next" in state) + ("Default" in state) + len(state.get("Choices", []))
        + len(state.get("Catch", []))
        for state in [*machine["States"].values(), *inner.values()]
    )  # fmt: skip
    assert arrows == transitions + 1 + len(maps)  # and the start of the machine, of each item
    assert f"## The {'tick' if machine_type == STANDARD else 'delivery window'}" in document(
        template
    )


def test_every_file_the_readme_names_exists_and_it_points_nowhere_outside() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    top = "|".join(re.escape(path.name) for path in ROOT.iterdir() if path.is_dir())
    named = set(re.findall(rf"`((?:{top})/[\w./-]*)`", readme))
    assert len(named) > 5, "the README names hardly any file"
    assert sorted(path for path in named if not (ROOT / path).exists()) == []
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        text = page.read_text(encoding="utf-8")
        assert "shared/" not in text, page.name
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), (page.name, target)
            assert resolved.exists(), (page.name, target)


def test_the_lifecycle_pictures_are_drawn_from_the_transition_tables() -> None:
    assert LIFECYCLE_DOCUMENT.read_text(encoding="utf-8") == lifecycle_document(), "run `make docs`"


@pytest.mark.parametrize("lifecycle", [NOTIFICATION, PROCESS], ids=["notification", "process"])
def test_the_lifecycle_picture_has_every_state_and_every_transition(
    lifecycle: Lifecycle[Any, Any],
) -> None:
    chart = lifecycle_chart(lifecycle)
    arrows = {tuple(line.split(":")[0].strip().split(" --> ")) for line in chart.splitlines()[1:]}
    assert arrows == (
        {(source.value, target.value) for source, target in lifecycle.allowed()}
        | {("[*]", state.value) for state in lifecycle.initial}
        | {(state.value, "[*]") for state in lifecycle.final()}
    )
    for item in lifecycle.transitions:
        label = next(
            line for line in chart.splitlines() if f"{item.source} --> {item.target}:" in line
        )
        events = label.split(": ", 1)[1].removesuffix(" (guarded)").split(", ")
        assert str(item.event) in events, label
        assert label.endswith(" (guarded)") == (item.guard is not None), label
