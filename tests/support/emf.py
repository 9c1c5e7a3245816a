"""The CloudWatch metrics the handlers wrote to stdout (embedded metric format)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest


def emf_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Each metrics document written since the last read of ``capsys``."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]


def metric_values(capsys: pytest.CaptureFixture[str], *prefixes: str) -> dict[str, list[float]]:
    """Every value written since the last read of ``capsys`` of each metric whose name
    starts with one of ``prefixes``, in the order written."""
    found: dict[str, list[float]] = {}
    for document in emf_lines(capsys):
        for name, value in document.items():
            if name.startswith(prefixes):
                found.setdefault(name, []).extend(value if isinstance(value, list) else [value])
    return found


def counts_by_series(capsys: pytest.CaptureFixture[str]) -> Counter[tuple[str, tuple[str, ...]]]:
    """The counters written since the last read of ``capsys``, by series: the metric and
    its dimensions other than ``service`` (``("Channel=phone",)``), as CloudWatch stores
    them. Every series carries ``service`` (the one the alarms watch)."""
    counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for document in emf_lines(capsys):
        for definition in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in definition["Dimensions"]:
                assert "service" in dimension_set  # the series the alarms watch
                others = tuple(
                    f"{key}={document[key]}" for key in dimension_set if key != "service"
                )
                for metric in definition["Metrics"]:
                    if metric["Unit"] == "Count":
                        values = document[metric["Name"]]
                        total = sum(values) if isinstance(values, list) else values
                        counts[(metric["Name"], others)] += total
    return counts


def counts(capsys: pytest.CaptureFixture[str]) -> Counter[str]:
    """The counters written since the last read of ``capsys``, in their series without a
    dimension but ``service``."""
    return Counter(
        {
            name: count
            for (name, dimensions), count in counts_by_series(capsys).items()
            if not dimensions
        }
    )
