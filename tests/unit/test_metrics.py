"""The metric registry: a metric is written only as declared, and the code writes no
other way, so the dashboard drawn from the registry shows everything the code emits."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from escalator import metrics
from escalator.channels import CHANNELS, phone
from tests.support.emf import emf_lines

PACKAGE = Path(metrics.__file__).resolve().parent
# What writes CloudWatch metrics, outside ``escalator.metrics``'s own functions.
WRITERS = {"add_metric", "add_dimension", "add_dimensions", "single_metric", "flush_metrics"}


@functools.cache
def sources() -> list[tuple[Path, ast.Module]]:
    """The runtime package's modules but ``escalator.metrics``, parsed once."""
    return [
        (path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != Path(metrics.__file__).resolve()
    ]


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda: metrics.count("NotificationsLost"), "is not declared"),
        (lambda: metrics.count(metrics.LATENESS), "declared in Seconds, not Count"),
        (lambda: metrics.count(metrics.EXPIRED, Channel="phone"), "no dimension"),
        (lambda: metrics.count(metrics.SENT, Region="eu"), "no dimension"),
    ],
    ids=["undeclared", "another unit", "undeclared dimension", "another dimension"],
)
def test_a_metric_is_written_only_as_declared(
    write: object, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(write)
    with pytest.raises(metrics.UndeclaredMetric, match=message):
        write()
    metrics.metrics.flush_metrics()
    assert emf_lines(capsys) == []


def test_a_metric_with_its_channel_is_one_data_point_in_both_series(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # WHEN a delivery is counted with its channel, and one whose channel is not known
    metrics.count(metrics.SENT, Channel="pubnub")
    (breakdown,) = emf_lines(capsys)  # written at once
    metrics.count(metrics.SENT, Channel=None)
    metrics.metrics.flush_metrics()  # as log_metrics does at the end of an invocation
    (total,) = emf_lines(capsys)

    # THEN the first is in the service's series (the alarms') and the channel's, once
    assert breakdown["_aws"] == {
        "Timestamp": breakdown["_aws"]["Timestamp"],
        "CloudWatchMetrics": [
            {
                "Namespace": "Escalator",
                "Dimensions": [["service"], ["service", "Channel"]],
                "Metrics": [{"Name": "NotificationsSent", "Unit": "Count"}],
            }
        ],
    }
    assert (breakdown["Channel"], breakdown["NotificationsSent"]) == ("pubnub", [1.0])
    # AND the second in the service's series only
    assert total["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert "Channel" not in total


def test_the_code_writes_metrics_only_through_the_registry() -> None:
    direct = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path, tree in sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in WRITERS
    ]
    assert direct == [], "write metrics with escalator.metrics.count (declared in REGISTRY)"


def test_every_metric_the_code_counts_is_declared() -> None:
    counted: list[str] = []
    for path, tree in sources():
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "count"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "metrics"
            ):
                continue
            name = node.args[0]
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            if isinstance(name, ast.Attribute):  # metrics.SENT
                counted.append(getattr(metrics, name.attr))
            elif isinstance(name, ast.Constant):
                counted.append(str(name.value))
            else:
                pytest.fail(f"{where}: count a metric by its registry constant")
    assert len(counted) >= 10, "the scan found hardly any metric"
    assert sorted(set(counted) - set(metrics.registry())) == []


def test_every_final_provider_status_has_its_declared_metric() -> None:
    # (each channel with status callbacks declares its statuses' metrics beside them)
    with_callbacks = [c for c in CHANNELS.values() if c.callbacks is not None]
    assert {channel.name for channel in with_callbacks} >= {"phone", "sms"}
    for channel in with_callbacks:
        assert channel.callbacks is not None
        statuses = channel.callbacks.statuses
        declared = {name for name in metrics.registry() if name.startswith(statuses.metric_prefix)}
        counted = {statuses.metric(status) for status in statuses.final}
        assert declared == {*counted, statuses.failed_share_metric}
    assert metrics.registry()["CallsNoAnswer"].graph == phone.STATUSES.graph
