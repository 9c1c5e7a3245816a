"""The notifier step's hand-over to its provider (``delivery.deliver``): a provider gets
what is left of the function's time less a margin to answer, and one that has not
answered by then may have the request; the provider's error reaches the caller as
raised; each attempt is logged. ``make mutate`` found these untested (docs/mutation.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from escalator.delivery import ANSWER_MARGIN_SECONDS, deliver
from escalator.errors import (
    AmbiguousDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from escalator.model import Delivery, Receipt

DELIVERY = Delivery(7, "restaurant-42", "pubnub", "ch13234", 1_800_000_000)


class Provider:
    """A notifier whose provider answers ``answer`` (or raises it) once ``release`` is
    set; it records the thread each delivery ran in."""

    def __init__(self, answer: Receipt | Exception, *, released: bool = True) -> None:
        self.answer = answer
        self.release = threading.Event()
        if released:
            self.release.set()
        self.threads: list[str] = []
        self.daemons: list[bool] = []

    def deliver(self, delivery: Delivery) -> Receipt:
        assert delivery == DELIVERY
        self.threads.append(threading.current_thread().name)
        self.daemons.append(threading.current_thread().daemon)
        self.release.wait(10)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def provider() -> Iterator[Callable[..., Provider]]:
    made: list[Provider] = []

    def make(answer: Receipt | Exception, *, released: bool = True) -> Provider:
        made.append(Provider(answer, released=released))
        return made[-1]

    yield make
    for each in made:  # no provider thread outlives its test
        each.release.set()


RECEIPT = Receipt("17000000000000000", {"message": "{}"})


def test_without_a_time_limit_the_provider_is_called_in_the_callers_thread(
    provider: Callable[..., Provider],
) -> None:
    answering = provider(RECEIPT)
    assert deliver(answering, DELIVERY) == RECEIPT
    assert answering.threads == [threading.current_thread().name]


def test_a_provider_answering_within_the_time_left_less_the_margin_is_delivered(
    provider: Callable[..., Provider],
) -> None:
    answering = provider(RECEIPT)
    assert deliver(answering, DELIVERY, time_left=ANSWER_MARGIN_SECONDS + 5) == RECEIPT
    assert answering.threads == ["provider-call"]


def test_a_provider_silent_past_the_time_left_less_the_margin_is_ambiguous(
    provider: Callable[..., Provider],
) -> None:
    # GIVEN a provider that answers one second after the request, and 0.2 s to wait
    silent = provider(RECEIPT, released=False)
    threading.Timer(1.0, silent.release.set).start()

    # WHEN the delivery has the margin and 0.2 s left
    started = time.monotonic()
    with pytest.raises(AmbiguousDeliveryError) as given_up:
        deliver(silent, DELIVERY, time_left=ANSWER_MARGIN_SECONDS + 0.2)

    # THEN it is given up (not retried: the provider may have it) before the answer came
    assert time.monotonic() - started < 1.0
    assert str(given_up.value) == (
        "no answer from the provider within 0.2 s, before the function's timeout;"
        " it may have the request: not retried"
    )
    # AND the provider's call, left behind, never holds the process open
    assert (silent.threads, silent.daemons) == (["provider-call"], [True])


@pytest.mark.parametrize("beyond_the_margin", [0.0, -1.0])
def test_no_time_left_beyond_the_margin_is_transient_and_nothing_is_sent(
    provider: Callable[..., Provider], beyond_the_margin: float
) -> None:
    never = provider(RECEIPT)
    with pytest.raises(TransientDeliveryError) as no_time:
        deliver(never, DELIVERY, time_left=ANSWER_MARGIN_SECONDS + beyond_the_margin)
    assert str(no_time.value) == "no time left to deliver before the function's timeout"
    assert never.threads == []


@pytest.mark.parametrize("time_left", [None, ANSWER_MARGIN_SECONDS + 5])
def test_the_providers_error_reaches_the_caller_as_raised_and_is_logged(
    provider: Callable[..., Provider],
    time_left: float | None,
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    refused = PermanentDeliveryError("PubNub answered HTTP 400")
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver(provider(refused), DELIVERY, time_left=time_left)

    assert raised.value is refused
    (line,) = [line for line in log_lines() if line["message"] == "delivery attempt failed"]
    assert {key: line[key] for key in ("notification_id", "process_id", "channel", "error")} == {
        "notification_id": 7,
        "process_id": "restaurant-42",
        "channel": "pubnub",
        "error": "PermanentDeliveryError",
    }
    assert line["reason"] == "PubNub answered HTTP 400"


def test_a_delivery_is_logged_with_the_providers_reference(
    provider: Callable[..., Provider], log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    deliver(provider(RECEIPT), DELIVERY)

    (line,) = [line for line in log_lines() if line["message"] == "notification delivered"]
    assert {key: line[key] for key in ("notification_id", "process_id", "provider_ref")} == {
        "notification_id": 7,
        "process_id": "restaurant-42",
        "provider_ref": "17000000000000000",
    }
