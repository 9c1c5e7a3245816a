"""PubNub messages; the destination is a channel name."""

from __future__ import annotations

from escalator.channels.base import Channel

MAX_CHANNEL_NAME = 92
# PubNub reserves these for channel groups, wildcards and multiplexing.
_RESERVED = set(",:*/\\")


def target_problem(name: str) -> str | None:
    """Why ``name`` is not a usable PubNub channel name, or ``None``."""
    if not name.strip():
        return "is empty"
    if len(name) > MAX_CHANNEL_NAME:
        return f"is longer than {MAX_CHANNEL_NAME} characters"
    if any(char in _RESERVED or not char.isprintable() or char.isspace() for char in name):
        return "contains a character PubNub does not allow (space, control, or one of , : * / \\)"
    return None


CHANNEL = Channel(name="pubnub", target_field="pubnub-channel", target_problem=target_problem)
