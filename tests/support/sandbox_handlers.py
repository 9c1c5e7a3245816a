"""Handlers for tests of the rehearsal's sandbox processes (``devstack.rehearsal``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from devstack.polling import wait_until


def answer_when_released(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Which process answered ``event``'s label, once the file ``event["release"]`` names
    exists (at once without one)."""
    release = event.get("release")
    if release is not None:
        wait_until(Path(release).exists, timeout=30, what=f"{release} to exist")
    return {"label": event["label"], "pid": os.getpid()}
