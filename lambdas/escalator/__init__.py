"""Escalator: escalation notifications (phone, e-mail, PubNub) on AWS Step Functions."""

from __future__ import annotations

__version__ = "0.1.0"
