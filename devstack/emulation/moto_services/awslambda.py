"""The replacements of the adapter's rows for moto's Lambda service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devstack.emulation.moto_services.base import Emulation

# ---- the replacements, one factory per row -------------------------------------------


def invoke_in_process(original: Any, emulation: Emulation) -> Callable[..., bytes]:
    lambdas = emulation.lambdas

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
        return lambdas.invoke(self, body, response_headers)

    return invoke
