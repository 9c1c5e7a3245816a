"""Handlers running at once in threads of one process (the emulation's sandboxes) write
their metrics each to its own document, as each Lambda sandbox does."""

from __future__ import annotations

import json
import threading

import pytest

from escalator import metrics


def test_two_invocations_at_once_each_flush_their_own_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN one invocation wrote a metric and has not returned yet
    written = threading.Event()
    flushed = threading.Event()
    failures: list[BaseException] = []

    def first() -> None:
        try:
            metrics.count(metrics.EXPIRED)
            written.set()
            assert flushed.wait(10)
            metrics.metrics.flush_metrics(raise_on_empty_metrics=True)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert written.wait(10)

    # WHEN another writes its own and returns (its metrics flushed) meanwhile
    metrics.count(metrics.COALESCED)
    metrics.metrics.flush_metrics(raise_on_empty_metrics=True)
    flushed.set()
    thread.join(10)

    # THEN each document holds its own invocation's metric, and the first did not fail
    # for want of one (its metric taken by the other's flush)
    assert failures == []
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = [
        [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]] for doc in documents
    ]
    assert names == [["NotificationsCoalesced"], ["NotificationsExpired"]]
