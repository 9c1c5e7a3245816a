"""The channel registry: every channel a notification can go out on.

A channel is one module in this package plus one entry in ``CHANNELS``. The request
contract, the notifier Lambdas and the state machine are all built from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from escalator.channels import console, email, phone, pubnub, sms
from escalator.channels.base import Channel, Notifier

CHANNELS: Mapping[str, Channel] = MappingProxyType(
    {
        channel.name: channel
        for channel in (phone.CHANNEL, sms.CHANNEL, email.CHANNEL, pubnub.CHANNEL, console.CHANNEL)
    }
)

__all__ = ["CHANNELS", "Channel", "Notifier"]
