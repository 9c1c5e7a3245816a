"""The context settings the infra tests synthesize the stack with (besides its
defaults): every setting they change, in one synthesis, which the session's first
process makes beside the default one (tests/conftest.py)."""

from __future__ import annotations

from typing import Any

PRODUCER = "arn:aws:iam::210987654321:role/ordering-backend"
ALARM_TOPIC = "arn:aws:sns:eu-central-1:123456789012:escalator-alarms"
REGISTRY = {"default": "+12025550123"}
# Every context setting the tests change from its default, in one synthesis.
CUSTOM_CONTEXT: dict[str, Any] = {
    "db_instance_class": "t4g.small",
    "db_allocated_storage_gib": 50,
    "db_free_storage_alarm_percent": 8,
    "db_deletion_protection": False,
    "db_removal_policy": "snapshot",
    "db_connection_cap": 18,
    "delivery_log_level": "ALL",
    "max_concurrency": 7,
    "retention_days": 45,
    "alarm_topic_arn": ALARM_TOPIC,
    "producer_arns": [PRODUCER],
    "twilio_secret_name": "prod/twilio",
    "caller_id_registry": REGISTRY,
    # providers' settings (the channel registry's context keys)
    "pubnub_origin": "http://127.0.0.1:8080/pubnub",
    "sms_body": "An order is waiting.",
}
