"""The JSON log lines the handlers wrote during a test (the ``log_lines`` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def logged(log_lines: Callable[[], list[dict[str, Any]]], message: str) -> list[dict[str, Any]]:
    """The lines written so far with this ``message``, in order."""
    return [line for line in log_lines() if line["message"] == message]
