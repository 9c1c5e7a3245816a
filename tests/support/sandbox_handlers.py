"""Handlers for tests of the rehearsal's sandbox processes (``devstack.rehearsal``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def answer_when_released(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Which process answered ``event``'s label, once the file ``event["release"]`` names
    exists (at once without one)."""
    release = event.get("release")
    while release is not None and not Path(release).exists():
        time.sleep(0.01)
    return {"label": event["label"], "pid": os.getpid()}
