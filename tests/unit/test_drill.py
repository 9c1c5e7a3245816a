"""The fault drill's figures: what the peers received and what each notification became,
and which ``unknown`` ones never reached a provider (the outbox says which deliveries a
provider's transport took or may have taken)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from devstack.local.drill import figures

LOG = (
    "escalator local: Lambda faults injected:"
    " FunctionsConfirm throttled 3, FunctionsRecord lost-answer 2"
)


def peers(calls: list[str], mails: list[str], channels: list[str]) -> Any:
    return SimpleNamespace(
        twilio=SimpleNamespace(calls=[SimpleNamespace(form={"To": to}) for to in calls]),
        smtp=SimpleNamespace(mails=[SimpleNamespace(recipients=[to]) for to in mails]),
        pubnub=SimpleNamespace(publications=[SimpleNamespace(channel=ch) for ch in channels]),
    )


def outbox(*entries: tuple[int, str]) -> list[dict[str, Any]]:
    return [{"notification_id": id_, "outcome": outcome} for id_, outcome in entries]


LOST_ANSWER = "Lambda.ServiceException: the notifier's answer was lost"
LEASE = "no outcome was recorded before the sending lease ran out"


def test_unknown_notifications_that_never_reached_a_provider_are_counted_by_id() -> None:
    # GIVEN a call and an e-mail recorded unknown whose notifier ran (one took it, one
    # may have: its answer was lost), and a PubNub message recorded unknown by the lease
    # whose notifier never ran, and another whose transport failed before it left
    rows = [
        (1, "+385910000001", "unknown", LOST_ANSWER),
        (2, "owner2@example.com", "unknown", LOST_ANSWER),
        (3, "restaurant-3", "unknown", LEASE),
        (4, "restaurant-4", "unknown", LEASE),
        (5, "restaurant-5", "sent", ""),
    ]
    received = peers(["+385910000001"], ["owner2@example.com"], ["restaurant-5"])
    records = outbox((1, "sent"), (2, "unknown"), (4, "failed"), (5, "sent"))

    # WHEN the drill counts
    result = figures(rows, received, 5, LOG, records)

    # THEN the two that never reached a provider are named, beside the lost ones
    assert result["unknown_never_reached_a_provider"] == 2
    assert result["unknown_never_reached_ids"] == [3, 4]
    assert (result["lost"], result["doubled"], result["delivered"]) == (2, 0, 3)
    assert result["unknown"] == 4
    assert result["faults"] == {"throttled": 3, "lost-answer": 2}


def test_no_unknown_is_counted_unreached_when_each_reached_its_provider() -> None:
    rows = [(1, "+385910000001", "unknown", LOST_ANSWER), (2, "restaurant-2", "sent", "")]
    received = peers(["+385910000001"], [], ["restaurant-2", "restaurant-2"])

    result = figures(rows, received, 2, "", outbox((1, "sent"), (2, "sent")))

    assert result["unknown_never_reached_a_provider"] == 0
    assert result["doubled"] == 1
