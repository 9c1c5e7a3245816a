"""``make docs``: every generated document, each written from the code or the synthesized
template by its module (``diagram``, ``dashboard``, ``schema``); a test of each fails when
the committed file is stale."""

from __future__ import annotations

import sys
from pathlib import Path


def write(path: Path, text: str) -> int:
    """Write a generated document and say so (on stderr); 0, as a ``main`` returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


def main() -> int:
    """Write every generated document."""
    from devstack import dashboard, diagram, schema

    return diagram.main() or dashboard.main() or schema.main()


if __name__ == "__main__":
    sys.exit(main())
