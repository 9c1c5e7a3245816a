"""The synthesized templates the infra tests read: the default one (shared by the whole
session), and one synthesized with every setting the tests change, at once."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.emulation.template import shared_synthesis, synthesized_template
from tests.support.contexts import CUSTOM_CONTEXT


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """The stack with its defaults."""
    return synthesized_template()


@pytest.fixture(scope="session")
def customized() -> dict[str, Any]:
    """The stack with ``CUSTOM_CONTEXT``."""
    return shared_synthesis(**CUSTOM_CONTEXT)
