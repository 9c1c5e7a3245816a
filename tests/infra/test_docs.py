"""The documentation shows the machine that runs: the state machine picture in docs/ is
drawn from the synthesized definition; the README is a front door that maps every page of
docs/; every link of the README and docs/ resolves, to a file and to a heading; and the
pages the README's sections moved to still list what the stack has (its alarms, its
metrics, its settings); the lifecycles' pictures are drawn from their transition
tables."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from devstack.docs.diagram import DOCUMENT, document, mermaid
from devstack.docs.lifecycle import DOCUMENT as LIFECYCLE_DOCUMENT
from devstack.docs.lifecycle import document as lifecycle_document
from devstack.docs.lifecycle import mermaid as lifecycle_chart
from devstack.emulation.template import EXPRESS, STANDARD, resources, state_machine_definition
from escalator import metrics
from escalator.channels import CHANNELS
from escalator.config import Env
from escalator.lifecycle import NOTIFICATION, PROCESS, Lifecycle
from infra.settings import StackSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# The README is a front door: what Escalator is, the two commands, the architecture, the
# contract in brief, deploying, the headline figures and a map of docs/; the rest has a
# page of its own there.
README_MAX_LINES = 300
# The README's two commands, exactly: each makes its own .venv on a fresh clone.
TWO_COMMANDS = (
    "make demo    # the main job: the whole system on this machine, running a scripted scenario\n"
    "make test    # ruff, mypy and the whole test suite (with the stress suite at reduced size)\n"
)
# StackSettings fields that are not context keys themselves: the channels' settings and
# secrets, whose keys the channel registry names.
NOT_CONTEXT_KEYS = {"provider", "existing_secrets"}


def pages() -> list[Path]:
    """The README and every Markdown page of docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (their lines are neither headings nor links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them: lower case, punctuation
    dropped, spaces as hyphens, a repeated heading numbered."""
    made: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose(text), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, number = slug, 0
        while anchor in made:
            number += 1
            anchor = f"{slug}-{number}"
        made.add(anchor)
    return made


def links(text: str) -> list[str]:
    """The targets of a page's Markdown links and images."""
    return re.findall(r"\]\(([^)\s]+)\)", prose(text))


def section(text: str, heading: str) -> str:
    """The part of a page under ``heading`` (a whole heading line), up to the next
    heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(f"\n{heading}\n")
    following = re.search(rf"^#{{1,{level}}}\s", text[start + len(heading) + 2 :], re.MULTILINE)
    end = start + len(heading) + 2 + following.start() if following else len(text)
    return text[start:end]


def first_column(text: str) -> set[str]:
    """Every name in backquotes in the first column of the tables in ``text``."""
    cells = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    return {name for cell in cells for name in re.findall(r"`([^`]+)`", cell)}


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
    top = "|".join(re.escape(path.name) for path in ROOT.iterdir() if path.is_dir())
    readme = README.read_text(encoding="utf-8")
    assert len(set(re.findall(rf"`((?:{top})/[\w./-]*)`", readme))) > 5, (
        "the README names hardly any file"
    )
    for page in pages():
        text = page.read_text(encoding="utf-8")
        named = set(re.findall(rf"`((?:{top})/[\w./-]*)`", text))
        assert sorted(path for path in named if not (ROOT / path).exists()) == [], page.name
        # the README and docs/ stand alone: nothing outside the project
        assert "shared/" not in text, page.name
        assert "DESIGN.md" not in text, page.name
        for link in links(text):
            if link.startswith(("http://", "https://")):
                continue
            target, _, anchor = link.partition("#")
            resolved = (page.parent / target).resolve() if target else page
            assert resolved.is_relative_to(ROOT), (page.name, link)
            assert resolved.exists(), (page.name, link)
            if anchor:
                headings = anchors(resolved.read_text(encoding="utf-8"))
                assert anchor in headings, (page.name, link, sorted(headings))


def test_the_readme_is_a_front_door_with_a_map_of_every_page_of_docs() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES, "move the detail to a page of docs/"
    mapped = {(ROOT / link).resolve() for link in links(section(readme, "## Documentation"))}
    assert sorted(path.name for path in DOCS.iterdir() if path.resolve() not in mapped) == []


def test_every_written_page_of_docs_links_back_to_the_readme() -> None:
    written = [page for page in DOCS.glob("*.md") if page != DOCUMENT]  # (generated)
    assert len(written) > 5
    for page in written:
        assert "../README.md" in links(page.read_text(encoding="utf-8")), page.name


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = README.read_text(encoding="utf-8")
    first_block = re.search(r"^```sh\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert first_block is not None
    assert first_block.group(1) == TWO_COMMANDS
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: \$\(STAMP\)", makefile, re.MULTILINE)  # (STAMP makes .venv)
    assert re.search(r"^test: lint\b", makefile, re.MULTILINE)
    assert re.search(r"^lint: \$\(STAMP\)", makefile, re.MULTILINE)
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().endswith("\nmake test")


def test_the_operations_page_lists_exactly_the_alarms_of_the_stack(
    template: dict[str, Any],
) -> None:
    names = [
        re.fullmatch(r"Alarms(\w+?)[0-9A-F]{8}", logical_id)
        for logical_id in resources(template, "AWS::CloudWatch::Alarm")
    ]
    assert all(names), "alarms are no longer named Alarms<name><hash>"
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    listed = first_column(section(operations, "## Alarms"))
    assert listed == {name.group(1) for name in names if name}


def test_the_operations_page_names_every_declared_metric() -> None:
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(\w+)`", section(operations, "## Metrics")))
    assert len(metrics.registry()) > 10
    assert sorted(set(metrics.registry()) - named) == []


def test_the_deploy_page_lists_every_setting_of_the_stack_and_every_variable() -> None:
    deploy = (DOCS / "deploy.md").read_text(encoding="utf-8")
    context_keys = {item.name for item in fields(StackSettings)} - NOT_CONTEXT_KEYS
    variables = {value for name, value in vars(Env).items() if name.isupper()}
    for channel in CHANNELS.values():
        context_keys |= set(channel.settings)
        variables |= set(channel.settings.values())
        if channel.secret is not None:
            context_keys.add(channel.secret.context_key)
            variables |= {channel.secret.variable, *channel.secret.fields}
    assert first_column(section(deploy, "## Context settings")) == context_keys
    documented = first_column(section(deploy, "## The functions' environment"))
    assert sorted(variables - documented) == []


def test_the_tick_section_names_how_the_tick_starts_its_window(template: dict[str, Any]) -> None:
    tick = json.dumps(state_machine_definition(template, STANDARD))
    integrations = set(re.findall(r"arn:aws:states:::([\w:.-]+)", tick))
    # (the tick waits for its window: the one integration that starts and waits)
    window_start = [name for name in integrations if "sync" in name.lower()]
    assert window_start == ["aws-sdk:sfn:startSyncExecution"]
    assert f"`{window_start[0]}`" in document(template)


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
