"""``make docs``: every generated document, each written from the code or the synthesized
template by its module (``diagram``, ``dashboard``, ``schema``, ``lifecycle``); a
test of each fails when the committed file is stale."""

from __future__ import annotations

import sys

from devstack.docs import dashboard, diagram, lifecycle, schema


def main() -> int:
    """Write every generated document."""
    return diagram.main() or dashboard.main() or schema.main() or lifecycle.main()


if __name__ == "__main__":
    sys.exit(main())
