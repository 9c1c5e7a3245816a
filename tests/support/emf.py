"""The CloudWatch metrics the handlers wrote to stdout (embedded metric format)."""

from __future__ import annotations

import json
from typing import Any

import pytest


def emf_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Each metrics document written since the last read of ``capsys``."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
