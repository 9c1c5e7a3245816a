"""The replacements of the adapter's rows for moto's core and server: the same behaviour,
found once instead of on every request."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from devstack.emulation.moto_services.base import Emulation


def modules_listed_once(original: Any, emulation: Emulation) -> Callable[[], Any]:
    return functools.cache(lambda: tuple(original()))


def hosts_routed_once(original: Any, emulation: Emulation) -> Callable[[Any, str | None], Any]:
    found: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        # (moto calls this under its dispatcher's lock; the patterns never change)
        if host not in found:
            found[host] = original(self, host)
        return found[host]

    return get_backend_for_host


def seconds_read_directly(original: Any, emulation: Emulation) -> Callable[..., float]:
    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(original(dt))

    return unix_time


def millis_read_directly(original: Any, emulation: Emulation) -> Callable[..., float]:
    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(original(dt))

    return unix_time_millis
