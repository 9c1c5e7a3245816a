"""A test session may be given a template instead of synthesizing one
(``ESCALATOR_TEMPLATE_FILE``; devstack.mutation.least_privilege gives each of its sessions one with
a grant taken away): every process that asks for the synthesized template reads it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.emulation.template import (
    GIVEN_TEMPLATE_VARIABLE,
    TemplateError,
    resources,
    synthesized_template,
    synthesized_with,
)
from tests.support.contexts import CUSTOM_CONTEXT

PROVIDER_SETTINGS = {key: CUSTOM_CONTEXT[key] for key in ("pubnub_origin", "sms_body")}
PROVIDER_VARIABLES = ("PUBNUB_ORIGIN", "SMS_BODY")


@pytest.fixture
def given(
    template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The session's template with a mark of its own, given as a file."""
    marked = {**copy.deepcopy(template), "Description": "the given template"}
    path = tmp_path / "given.json"
    path.write_text(json.dumps(marked), encoding="utf-8")
    monkeypatch.setenv(GIVEN_TEMPLATE_VARIABLE, str(path))
    synthesized_template.cache_clear()
    yield marked
    synthesized_template.cache_clear()  # (the next caller reads the session's again)


def test_every_process_that_asks_for_the_synthesized_template_reads_the_given_one(
    given: dict[str, Any],
) -> None:
    assert synthesized_template() == given
    # and a process started in that environment (a local stack a test starts) too
    read = subprocess.run(
        [sys.executable, "-c", "from devstack.emulation.template import synthesized_template as s;"
         " print(s()['Description'])"],
        env=os.environ, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert read.stdout.strip().splitlines()[-1] == "the given template"


def provider_settings(template: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each function's provider settings in its environment."""
    return {
        logical_id: {
            name: value
            for name, value in function["Properties"]["Environment"]["Variables"].items()
            if name in PROVIDER_VARIABLES
        }
        for logical_id, function in resources(template, "AWS::Lambda::Function").items()
        if "Environment" in function["Properties"]
    }


def test_providers_settings_go_into_the_given_template_as_the_stack_puts_them(
    given: dict[str, Any], customized: dict[str, Any]
) -> None:
    # WHEN the rehearsal asks for the template with providers' settings as context
    made = synthesized_with(**PROVIDER_SETTINGS)

    # THEN each is in its notifier's environment as a synthesis with them puts it there
    assert provider_settings(made) == provider_settings(customized)
    assert any(provider_settings(made).values())
    # and nothing else of the given template changed
    for function in resources(made, "AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        for name in PROVIDER_VARIABLES:
            variables.pop(name, None)
    assert made == given


def test_a_setting_no_channel_has_is_refused(given: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="'pubnub_colour' is not a setting of any channel"):
        synthesized_with(pubnub_colour="blue")
