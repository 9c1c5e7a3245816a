"""``python -m escalator_cli``: the ``escalator`` command."""

from __future__ import annotations

import sys

from escalator_cli.main import main

sys.exit(main())
