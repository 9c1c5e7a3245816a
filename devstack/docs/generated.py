"""Writing a generated document of ``docs/`` (``make docs``): the one helper the
generators share, a leaf module, so that ``devstack.docs`` imports them and none of them
imports it back."""

from __future__ import annotations

import sys
from pathlib import Path


def write(path: Path, text: str) -> int:
    """Write a generated document and say so (on stderr); 0, as a ``main`` returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0
