"""What every channel module provides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Channel:
    """What Escalator knows about one channel.

    ``target_field`` is the request field that holds the destination, and
    ``target_problem`` tells why a destination is unusable (``None`` when it is fine).
    A problem never quotes the destination itself: reasons end up in logs.
    """

    name: str
    target_field: str
    target_problem: Callable[[str], str | None]
