"""The channel registry: every channel a notification can go out on.

A channel is one module in this package plus one entry in ``CHANNELS``. The request
contract, the notifier Lambdas, the state machine, the status-callback receiver and the
dashboard are all built from here; the metrics of each channel's provider statuses are
declared here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from escalator import metrics
from escalator.channels import console, email, phone, pubnub, sms
from escalator.channels.base import Channel, Notifier

CHANNELS: Mapping[str, Channel] = MappingProxyType(
    {
        channel.name: channel
        for channel in (phone.CHANNEL, sms.CHANNEL, email.CHANNEL, pubnub.CHANNEL, console.CHANNEL)
    }
)

# The channels for real recipients (all but those for trials, ``Channel.development``):
# the per-recipient guard applies to them, and the dashboard breaks them out.
RECIPIENT_CHANNELS: tuple[str, ...] = tuple(
    name for name, channel in CHANNELS.items() if not channel.development
)

for _channel in CHANNELS.values():
    if _channel.callbacks is not None:
        metrics.declare(*_channel.callbacks.statuses.declared_metrics())

__all__ = ["CHANNELS", "RECIPIENT_CHANNELS", "Channel", "Notifier"]
