"""The stack's settings: one default each, validated however they are made, and the
shortest log retention that keeps what was asked for."""

from __future__ import annotations

import pytest

from infra.settings import SettingsError, StackSettings, from_context

# (the CDK runs in its JavaScript runtime: on the one worker that starts it)
pytestmark = pytest.mark.xdist_group("cdk")


@pytest.mark.parametrize(
    ("days", "kept"),
    [
        (1, "ONE_DAY"),
        (2, "THREE_DAYS"),
        (30, "ONE_MONTH"),
        (31, "TWO_MONTHS"),
        (731, "TWO_YEARS"),
        (732, "THREE_YEARS"),
        (3653, "TEN_YEARS"),
        (3654, "INFINITE"),
    ],
)
def test_retention_keeps_logs_at_least_as_long_as_asked(days: int, kept: str) -> None:
    from aws_cdk import aws_logs as logs

    from infra.retention import retention

    assert retention(days) == getattr(logs.RetentionDays, kept)


def settings_of(**context: object) -> StackSettings:
    import aws_cdk as cdk

    return from_context(cdk.App(context=context).node)


def test_context_falls_back_to_the_dataclass_defaults() -> None:
    assert settings_of() == StackSettings()
    assert settings_of(delivery_log_level="all", db_multi_az="true").delivery_log_level == "ALL"
    assert settings_of(db_multi_az="true").db_multi_az is True
    assert settings_of(producer_arns="a,b").producer_arns == ("a", "b")
    assert settings_of(producer_arns='["a"]').producer_arns == ("a",)
    assert settings_of(db_removal_policy="SNAPSHOT").db_removal_policy == "snapshot"


def test_provider_settings_and_existing_secrets_come_from_the_channel_registry() -> None:
    settings = settings_of(
        twilio_url="https://x/twiml", smtp_port=2525, sms_body="Order!", pubnub_secret_name="p"
    )
    assert settings.provider == {
        "TWILIO_URL": "https://x/twiml",
        "SMS_BODY": "Order!",
        "SMTP_PORT": "2525",
    }
    assert settings.existing_secrets == {"pubnub": "p"}
    # the Twilio channels share theirs
    assert settings_of(twilio_secret_name="t").existing_secrets == {"phone": "t", "sms": "t"}


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ({"schedule_minutes": "soon"}, "schedule_minutes must be an integer"),
        ({"schedule_minutes": 2}, "schedule_minutes must be 1, got 2"),
        ({"delivery_log_level": "loud"}, "delivery_log_level must be one of"),
        ({"db_multi_az": "maybe"}, "db_multi_az must be true or false"),
        ({"db_allocated_storage_gib": 10}, "db_allocated_storage_gib must be at least 20"),
        ({"db_free_storage_alarm_percent": 0}, "db_free_storage_alarm_percent must be from 1 to 9"),
        ({"db_free_storage_alarm_percent": 10}, "would fire at every ordinary autoscaling step"),
        ({"db_removal_policy": "keep"}, "db_removal_policy must be one of"),
        ({"db_connection_cap": 8}, "db_connection_cap must be at least 12"),
        ({"recipient_guard_seconds": -1}, "recipient_guard_seconds must be from 0 .off. to 3600"),
        ({"recipient_guard_seconds": 7200}, "recipient_guard_seconds must be from 0 .off. to 3600"),
    ],
)
def test_a_malformed_context_value_is_named(context: dict[str, object], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        settings_of(**context)


def test_settings_made_in_code_are_validated_too() -> None:
    with pytest.raises(SettingsError, match="max_concurrency must be from 1 to 40, got 0"):
        StackSettings(max_concurrency=0)


@pytest.mark.parametrize(
    ("cap", "concurrency"),
    [
        # worked out by hand: the initiator gets a sixth of the cap (at least 2), the
        # activator 2, the migration 1, the call status recorder 2, the purge 1; confirm
        # and record share the rest (confirm the odd one); the Map runs 4 iterations per
        # sandbox of the smaller of the two, at most 40 (an inline Map's limit)
        (12, 8),  # 2 + 2 + 1 + 2 + 1 leave 4: confirm 2, record 2
        (18, 16),  # 3 + 2 + 1 + 2 + 1 leave 9: 5 and 4
        (30, 36),  # 5 + 2 + 1 + 2 + 1 leave 19: 10 and 9
        (31, 40),  # 5 + 2 + 1 + 2 + 1 leave 20: 10 and 10 (the default)
        (100, 40),  # 16 + 2 + 1 + 2 + 1 leave 78: 39 and 39, more than the Map's limit
    ],
)
def test_the_maps_concurrency_is_what_the_connection_budget_serves(
    cap: int, concurrency: int
) -> None:
    assert StackSettings(db_connection_cap=cap).map_concurrency == concurrency


def test_the_budget_shares_exactly_the_cap_and_concurrency_grows_with_it() -> None:
    previous = 0
    for cap in range(12, 301):
        settings = StackSettings(db_connection_cap=cap)
        budget = settings.budget
        assert budget.total == cap, cap
        assert budget.initiator >= 2, cap  # the least an SQS event source can be given
        assert min(budget.activator, budget.confirm, budget.record) >= 1, cap
        # every iteration of the Map waits behind at most 3 others for a sandbox
        assert settings.map_concurrency <= 4 * min(budget.confirm, budget.record), cap
        # more connections never mean fewer deliveries at once
        assert settings.map_concurrency >= previous, cap
        previous = settings.map_concurrency


def test_a_given_concurrency_beyond_what_the_budget_serves_is_refused() -> None:
    with pytest.raises(SettingsError, match="db_connection_cap 12"):
        StackSettings(db_connection_cap=12, max_concurrency=9)
    assert StackSettings(db_connection_cap=12, max_concurrency=8).map_concurrency == 8
