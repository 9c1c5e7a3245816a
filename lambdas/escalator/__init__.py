"""Escalator: escalation notifications (phone, e-mail, PubNub) on AWS Step Functions."""

from __future__ import annotations

__version__ = "0.1.0"
# The ``service`` of every log line and metric (the Powertools service name).
SERVICE = "escalator"
