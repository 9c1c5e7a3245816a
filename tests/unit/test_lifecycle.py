"""The lifecycle tables make sense on their own: every state is reached from a state rows
are created in, every state leads to an end, each event is described, nothing is listed
twice. (PostgreSQL enforcing them: tests/integration/test_lifecycle_transitions.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from escalator.lifecycle import NOTIFICATION, PROCESS, Lifecycle, NotificationState

LIFECYCLES = [pytest.param(NOTIFICATION, id="notification"), pytest.param(PROCESS, id="process")]


def reachable(lifecycle: Lifecycle[Any, Any], start: set[Any], forward: bool = True) -> set[Any]:
    """The states reached from ``start`` along the transitions (backwards: that reach it)."""
    pairs = {(a, b) if forward else (b, a) for a, b in lifecycle.allowed()}
    found = set(start)
    while True:
        more = {b for a, b in pairs if a in found} - found
        if not more:
            return found
        found |= more


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_every_state_is_reached_from_one_rows_are_created_in(
    lifecycle: Lifecycle[Any, Any],
) -> None:
    assert set(lifecycle.initial) <= set(lifecycle.states)
    assert reachable(lifecycle, set(lifecycle.initial)) == set(lifecycle.states)


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_every_state_leads_to_a_final_one(lifecycle: Lifecycle[Any, Any]) -> None:
    assert lifecycle.final()
    assert reachable(lifecycle, set(lifecycle.final()), forward=False) == set(lifecycle.states)


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_each_transition_is_listed_once_and_each_event_described(
    lifecycle: Lifecycle[Any, Any],
) -> None:
    listed = [(item.event, item.source, item.target) for item in lifecycle.transitions]
    assert len(listed) == len(set(listed))
    assert all(item.source != item.target for item in lifecycle.transitions)
    assert set(lifecycle.events) == {item.event for item in lifecycle.transitions}
    assert all(text.strip() for text in lifecycle.events.values())


def test_a_notification_handed_to_its_notifier_never_becomes_deliverable_again_unguarded() -> None:
    # (a second call: only a confirm withdrawn before its notifier ran goes back)
    back = [
        item
        for item in NOTIFICATION.transitions
        if item.source == NotificationState.SENDING and item.target == NotificationState.PENDING
    ]
    assert [item.guard is not None for item in back] == [True]
    delivered = {NotificationState.SENT, NotificationState.FAILED, NotificationState.UNKNOWN}
    assert reachable(NOTIFICATION, delivered) <= delivered
