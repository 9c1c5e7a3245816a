"""The database's disk never fills unnoticed: the storage alarms, read back from the
synthesized templates (the defaults' and the one with every setting the tests change),
with their thresholds, what they watch, where they are sent and that the dashboard shows
them."""

from __future__ import annotations

from typing import Any

from devstack.docs.dashboard import alarm_ids, alarm_name, dashboard
from devstack.emulation.template import resources
from tests.support.contexts import ALARM_TOPIC, CUSTOM_CONTEXT

# RDS allocates storage in GiB and reports FreeStorageSpace in bytes.
GIB = 1024**3
# Storage autoscaling acts once free space is at most this share of the allocated storage
# (AWS: "Managing capacity automatically with Amazon RDS storage autoscaling").
AUTOSCALING_FREE_SHARE = 0.10


def alarm_on(template: dict[str, Any], metric_name: str) -> dict[str, Any]:
    """The properties of the one alarm of ``template`` on ``metric_name``."""
    alarms: list[dict[str, Any]] = [
        alarm["Properties"]
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == metric_name
    ]
    (alarm,) = alarms
    return alarm


def instance(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((logical_id, database),) = resources(template, "AWS::RDS::DBInstance").items()
    return logical_id, database["Properties"]


def test_free_storage_alarm_watches_the_instance_below_what_autoscaling_leaves(
    template: dict[str, Any],
) -> None:
    instance_id, properties = instance(template)
    alarm = alarm_on(template, "FreeStorageSpace")
    assert alarm["Namespace"] == "AWS/RDS"
    assert alarm["Dimensions"] == [{"Name": "DBInstanceIdentifier", "Value": {"Ref": instance_id}}]
    # the least free space of each 5 minutes, alarming at once
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Minimum", 300, 1)
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    # 5 % of the first allocation (20 GiB), in bytes
    assert alarm["Threshold"] == 1 * GIB
    # below the level autoscaling acts at, whatever it grew the volume to: no ordinary
    # autoscaling step sets it off
    first_allocation = int(properties["AllocatedStorage"])
    assert 0 < alarm["Threshold"] < AUTOSCALING_FREE_SHARE * first_allocation * GIB
    # no alarm action without a topic
    assert "AlarmActions" not in alarm
    description = alarm["AlarmDescription"]
    assert "less than 1 GiB of free storage" in description
    assert "Raise db_max_allocated_storage_gib and deploy" in description
    assert "delete what is no longer needed" in description


def test_the_free_storage_threshold_follows_the_settings_and_the_alarm_goes_to_the_topic(
    customized: dict[str, Any],
) -> None:
    _, properties = instance(customized)
    assert int(properties["AllocatedStorage"]) == CUSTOM_CONTEXT["db_allocated_storage_gib"] == 50
    assert CUSTOM_CONTEXT["db_free_storage_alarm_percent"] == 8
    alarm = alarm_on(customized, "FreeStorageSpace")
    # 8 % of 50 GiB
    assert alarm["Threshold"] == 4 * GIB
    assert "less than 4 GiB of free storage" in alarm["AlarmDescription"]
    assert alarm["AlarmActions"] == [ALARM_TOPIC]


def test_the_dashboard_shows_the_storage_alarms(template: dict[str, Any]) -> None:
    shown = {alarm_name(logical_id) for logical_id in alarm_ids(dashboard(template)[1])}
    assert "DatabaseStorageLow" in shown
