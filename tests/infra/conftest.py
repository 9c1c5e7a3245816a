"""The synthesized templates the infra tests read: the default one (shared by the whole
session), and one synthesized with every setting the tests change, at once."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.template import synthesize, synthesized_template

PRODUCER = "arn:aws:iam::210987654321:role/ordering-backend"
ALARM_TOPIC = "arn:aws:sns:eu-central-1:123456789012:escalator-alarms"
REGISTRY = {"default": "+12025550123"}
# Every context setting the tests change from its default, in one synthesis.
CUSTOM_CONTEXT: dict[str, Any] = {
    "db_instance_class": "t4g.small",
    "db_deletion_protection": False,
    "db_removal_policy": "snapshot",
    "db_connection_cap": 18,
    "delivery_log_level": "ALL",
    "max_concurrency": 7,
    "alarm_topic_arn": ALARM_TOPIC,
    "producer_arns": [PRODUCER],
    "twilio_secret_name": "prod/twilio",
    "caller_id_registry": REGISTRY,
    # providers' settings (the channel registry's context keys)
    "pubnub_origin": "http://127.0.0.1:8080/pubnub",
    "sms_body": "An order is waiting.",
}


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """The stack with its defaults."""
    return synthesized_template()


@pytest.fixture(scope="session")
def customized() -> dict[str, Any]:
    """The stack with ``CUSTOM_CONTEXT``."""
    return synthesize(**CUSTOM_CONTEXT)
