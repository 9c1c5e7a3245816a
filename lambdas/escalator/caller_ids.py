"""Which number a call is placed from: a rule of the domain, kept in the database.

The registry is the JSON object under ``caller-id-registry`` in the ``property`` table,
e.g. ``{"default": "+12025550123", "+385": "+38512345678"}``. The confirm step chooses
the caller id of every delivery whose channel calls from one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from escalator.errors import EscalatorError

# The key of the registry in the ``property`` table.
CALLER_ID_REGISTRY = "caller-id-registry"


class CallerIdError(EscalatorError):
    """No caller id can be chosen for a destination; the message says why."""


def choose_caller_id(registry_json: str | None, number: str) -> str:
    """The caller id for ``number``: the entry with the longest prefix of it, else ``default``.

    A prefix without a leading ``+`` is read as if it had one. Raises ``CallerIdError``.
    """
    if registry_json is None:
        raise CallerIdError(f"there is no {CALLER_ID_REGISTRY} property")
    try:
        registry: Any = json.loads(registry_json)
    except json.JSONDecodeError:
        raise CallerIdError(f"the {CALLER_ID_REGISTRY} property is not valid JSON") from None
    if not isinstance(registry, Mapping):
        raise CallerIdError(f"the {CALLER_ID_REGISTRY} property is not a JSON object")
    matches = [
        (len(prefix), caller_id)
        for key, caller_id in registry.items()
        if key != "default" and isinstance(caller_id, str)
        for prefix in [key if key.startswith("+") else f"+{key}"]
        if number.startswith(prefix)
    ]
    if matches:
        return max(matches)[1]
    default = registry.get("default")
    if isinstance(default, str) and default:
        return default
    raise CallerIdError(
        f"no prefix in {CALLER_ID_REGISTRY} matches the number and there is no default"
    )
