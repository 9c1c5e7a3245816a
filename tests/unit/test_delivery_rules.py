"""Pure rules of the delivery pipeline: caller ids, failure reasons, event shapes."""

from __future__ import annotations

import json

import pytest

from escalator.caller_ids import CallerIdError, choose_caller_id
from escalator.channels import CHANNELS
from escalator.channels.base import ProviderStatuses
from escalator.handlers.record import failure_of, outcome_of
from escalator.model import Delivery, Failure, Receipt

REGISTRY = json.dumps(
    {"default": "+12025550123", "+385": "+38512345678", "38591": "+38591000000", "+44": 7}
)


@pytest.mark.parametrize(
    ("number", "caller_id"),
    [
        ("+385911234567", "+38591000000"),  # the longest prefix wins (written without +)
        ("+38512345678", "+38512345678"),  # only the shorter one matches
        ("+14155550123", "+12025550123"),  # nothing matches: the default
        ("+442071838750", "+12025550123"),  # a malformed entry is skipped
    ],
)
def test_caller_id_is_chosen_by_longest_prefix_then_default(number: str, caller_id: str) -> None:
    assert choose_caller_id(REGISTRY, number) == caller_id


@pytest.mark.parametrize(
    ("registry", "reason"),
    [
        (None, "there is no caller-id-registry property"),
        ("{", "the caller-id-registry property is not valid JSON"),
        ("[]", "the caller-id-registry property is not a JSON object"),
        (
            json.dumps({"+44": "+442071838750"}),
            "no prefix in caller-id-registry matches the number and there is no default",
        ),
    ],
)
def test_no_caller_id_has_a_clear_reason(registry: str | None, reason: str) -> None:
    with pytest.raises(CallerIdError) as failure:
        choose_caller_id(registry, "+385911234567")
    assert str(failure.value) == reason


def test_a_caught_lambda_error_becomes_its_name_and_message() -> None:
    cause = json.dumps({"errorType": "PermanentDeliveryError", "errorMessage": "error 21211"})
    failure = {"Error": "PermanentDeliveryError", "Cause": cause}
    assert failure_of(failure) == Failure("PermanentDeliveryError: error 21211")


def test_a_caught_plain_cause_is_kept_and_bounded() -> None:
    assert failure_of({"Error": "States.Timeout", "Cause": "x" * 5000}).reason.startswith(
        "States.Timeout: xxx"
    )
    assert len(failure_of({"Error": "E", "Cause": "x" * 5000}).reason) == 1000
    assert failure_of({}).reason == "Error"


def test_the_record_step_reads_a_receipt_or_a_failure() -> None:
    receipt = {"provider_ref": "CA123", "detail": {"from": "+38512345678"}}
    assert outcome_of({"notification_id": 1, "execution": "x", "receipt": receipt}) == Receipt(
        "CA123", {"from": "+38512345678"}
    )
    caught = {"Error": "NoNotifier", "Cause": "no notifier is deployed for this channel"}
    assert outcome_of({"notification_id": 1, "execution": "x", "failure": caught}) == Failure(
        "NoNotifier: no notifier is deployed for this channel"
    )


def test_delivery_survives_the_round_trip_through_the_state() -> None:
    delivery = Delivery(1, "restaurant-42", "phone", "+385911234567", 1_800_000_000, "+385123")
    assert Delivery.from_event(json.loads(json.dumps(delivery.to_event()))) == delivery


@pytest.mark.parametrize(
    "channel", [name for name, channel in CHANNELS.items() if channel.callbacks is not None]
)
def test_a_provider_status_supersedes_only_an_earlier_one_and_never_a_final_one(
    channel: str,
) -> None:
    callbacks = CHANNELS[channel].callbacks
    assert callbacks is not None
    statuses = callbacks.statuses
    for current in statuses.order:
        for status in statuses.order:
            later = statuses.order.index(status) > statuses.order.index(current)
            expected = current not in statuses.final and later
            assert statuses.supersedes(status, current) == expected, (status, current)
    assert all(statuses.supersedes(status, None) for status in statuses.order)
    assert statuses.failed < statuses.final


def test_a_providers_statuses_are_refused_unless_failed_are_final_and_final_known() -> None:
    def statuses(order: tuple[str, ...], final: set[str], failed: set[str]) -> ProviderStatuses:
        return ProviderStatuses(
            order=order,
            final=frozenset(final),
            failed=frozenset(failed),
            metric_prefix="Pings",
            failed_share_metric="PingsLostPercent",
        )

    # every status final and failed at once is consistent (the subsets may be equal)
    assert statuses(("lost",), {"lost"}, {"lost"}).metric("lost") == "PingsLost"
    with pytest.raises(ValueError, match="failed statuses must be final"):
        statuses(("sent", "lost"), {"sent"}, {"lost"})
    with pytest.raises(ValueError, match="final ones known"):
        statuses(("sent",), {"sent", "lost"}, set())


def test_a_providers_final_statuses_are_counted_and_the_failed_share_averaged() -> None:
    statuses = ProviderStatuses(
        order=("sent", "answered", "lost"),
        final=frozenset({"answered", "lost"}),
        failed=frozenset({"lost"}),
        metric_prefix="Pings",
        failed_share_metric="PingsLostPercent",
        noun="pings",
        graph="Ping outcomes",
    )

    declared = statuses.declared_metrics()

    assert [
        (m.name, m.unit.value, m.graph, m.statistics, m.right_axis, m.per) for m in declared
    ] == [
        ("PingsAnswered", "Count", "Ping outcomes", ("Sum",), False, None),
        ("PingsLost", "Count", "Ping outcomes", ("Sum",), False, None),
        ("PingsLostPercent", "Percent", "Ping outcomes", ("Average",), True, None),
    ]
    assert "pings whose final status the provider reported answered" in declared[0].meaning
    assert "(lost)" in declared[2].meaning
