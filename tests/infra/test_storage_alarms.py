"""The database's disk never fills unnoticed: the storage alarms, read back from the
synthesized templates (the defaults' and the one with every setting the tests change),
with their thresholds, what they watch, where they are sent and that the dashboard shows
them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.docs.dashboard import alarm_ids, alarm_name, dashboard
from devstack.emulation.template import ACCOUNT, REGION, resolve, resources
from tests.support.contexts import ALARM_TOPIC, CUSTOM_CONTEXT

# RDS allocates storage in GiB and reports FreeStorageSpace in bytes.
GIB = 1024**3
# Storage autoscaling acts once free space is at most this share of the allocated storage
# (AWS: "Managing capacity automatically with Amazon RDS storage autoscaling").
AUTOSCALING_FREE_SHARE = 0.10
# What RDS sends when autoscaling nears or reaches the ceiling, or cannot act (AWS: "Amazon
# RDS event categories and event messages"), and what it sends before every ordinary
# autoscaling step (more than 90 % of the volume used).
CEILING_EVENTS = {
    "RDS-EVENT-0225",  # the allocated storage at 80 % of the maximum storage threshold
    "RDS-EVENT-0224",  # an autoscaling step would reach or exceed it
    "RDS-EVENT-0223",  # autoscaling cannot scale
    "RDS-EVENT-0254",  # the account's storage quota
    "RDS-EVENT-0007",  # the allocated storage exhausted
}
ORDINARY_STEP_EVENT = "RDS-EVENT-0089"
# The instance's identifier, for the Ref to it (the template's).
INSTANCE = "escalator-database"


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
    assert "escalator db stats" in description
    assert "purge --older-than" in description


@dataclass(frozen=True)
class StorageEvents:
    """The rule that sends the instance's storage events, the log group it writes them
    to, the metric filter that counts them there, and the template's resource policies
    of CloudWatch Logs."""

    rule: dict[str, Any]
    log_group_id: str
    log_group: dict[str, Any]
    log_filter: dict[str, Any]
    policies: dict[str, Any]

    @property
    def log_group_name(self) -> str:
        return str(self.log_group["Properties"]["LogGroupName"])


def storage_events(template: dict[str, Any]) -> StorageEvents:
    (rule,) = resources(template, "AWS::Events::Rule").values()
    (log_filter,) = resources(template, "AWS::Logs::MetricFilter").values()
    log_group_id = log_filter["Properties"]["LogGroupName"]["Ref"]
    return StorageEvents(
        rule=rule,
        log_group_id=log_group_id,
        log_group=resources(template, "AWS::Logs::LogGroup")[log_group_id],
        log_filter=log_filter["Properties"],
        policies=resources(template, "AWS::Logs::ResourcePolicy"),
    )


def test_the_ceiling_alarm_counts_what_rds_says_of_the_ceiling_and_no_ordinary_step(
    template: dict[str, Any],
) -> None:
    instance_id, _ = instance(template)
    found = storage_events(template)
    rule = found.rule["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.rds"]
    assert pattern["detail-type"] == ["RDS DB Instance Event"]
    assert pattern["detail"]["SourceIdentifier"] == [{"Ref": instance_id}]
    assert sorted(pattern["detail"]["EventID"]) == sorted(CEILING_EVENTS)
    assert ORDINARY_STEP_EVENT not in pattern["detail"]["EventID"]
    # each goes to a log group of its own, kept as long as the stack's logs and removed
    # with the stack
    name = found.log_group_name
    assert name == "/aws/events/Escalator/database-storage"
    assert found.log_group["Properties"]["RetentionInDays"] == 30
    assert found.log_group["DeletionPolicy"] == "Delete"
    (target,) = resolve(rule["Targets"], {found.log_group_id: name})
    assert target["Arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"
    assert "RoleArn" not in target  # (EventBridge writes to Logs by a resource policy only)
    # which lets EventBridge write there, and exists before the rule sends anything
    ((policy_id, policy),) = [
        (logical_id, policy)
        for logical_id, policy in found.policies.items()
        if found.log_group_id in json.dumps(policy)
    ]
    group_arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"
    document = json.loads(
        resolve(policy["Properties"]["PolicyDocument"], {found.log_group_id: group_arn})
    )
    assert document["Statement"] == [
        {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Resource": group_arn,
        }
    ]
    assert policy_id in found.rule["DependsOn"]
    # every line of the log group counts one, in the metric the alarm watches
    (transformation,) = found.log_filter["MetricTransformations"]
    assert found.log_filter["FilterPattern"] == ""
    assert transformation["MetricValue"] == "1"
    alarm = alarm_on(template, transformation["MetricName"])
    assert alarm["Namespace"] == transformation["MetricNamespace"] == "Escalator/Database"
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"
    description = alarm["AlarmDescription"]
    assert all(event in description for event in CEILING_EVENTS)
    assert name in description
    assert "Raise db_max_allocated_storage_gib and deploy" in description
    assert len(description) <= 1024  # (CloudWatch's limit)


def rds_event(event_id: str, identifier: str = INSTANCE) -> dict[str, Any]:
    """An RDS instance event as EventBridge receives it (AWS: "Creating a rule that
    triggers on an Amazon RDS event")."""
    arn = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{identifier}"
    detail = {
        "EventCategories": ["notification"],
        "SourceType": "DB_INSTANCE",
        "SourceArn": arn,
        "Date": "2026-12-01T08:00:00.000Z",
        "Message": f"{event_id} of {identifier}",
        "SourceIdentifier": identifier,
        "EventID": event_id,
    }
    return {
        "Source": "aws.rds",
        "DetailType": "RDS DB Instance Event",
        "Resources": [arn],
        "Detail": json.dumps(detail),
    }


@pytest.mark.usefixtures("aws_credentials")
def test_eventbridge_logs_the_instances_ceiling_events_and_no_others(
    template: dict[str, Any],
) -> None:
    """The rule and its target as the template has them, in moto's EventBridge: what
    reaches the log group (and its metric filter) is the instance's ceiling events."""
    instance_id, _ = instance(template)
    found = storage_events(template)
    name = found.log_group_name
    rule = resolve(
        found.rule["Properties"],
        {
            instance_id: INSTANCE,
            found.log_group_id: name,
            # (as CloudFormation gives a log group's Arn attribute)
            f"{found.log_group_id}.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
        },
    )
    sent = [
        *(rds_event(event_id) for event_id in sorted(CEILING_EVENTS)),
        rds_event(ORDINARY_STEP_EVENT),
        rds_event("RDS-EVENT-0225", identifier="another-database"),
    ]
    with mock_aws():
        logs = boto3.client("logs", region_name=REGION)
        eventbridge = boto3.client("events", region_name=REGION)
        logs.create_log_group(logGroupName=name)
        eventbridge.put_rule(Name="storage", EventPattern=json.dumps(rule["EventPattern"]))
        eventbridge.put_targets(Rule="storage", Targets=rule["Targets"])
        assert eventbridge.put_events(Entries=sent)["FailedEntryCount"] == 0
        lines = logs.filter_log_events(
            logGroupName=name, filterPattern=found.log_filter["FilterPattern"]
        )["events"]
    logged = sorted(
        (entry["detail"]["SourceIdentifier"], entry["detail"]["EventID"])
        for entry in (json.loads(line["message"]) for line in lines)
    )
    assert logged == sorted((INSTANCE, event_id) for event_id in CEILING_EVENTS)


def test_the_free_storage_threshold_follows_the_settings_and_both_alarms_go_to_the_topic(
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
    assert alarm_on(customized, "StorageEvents")["AlarmActions"] == [ALARM_TOPIC]


def test_the_dashboard_shows_the_storage_alarms(template: dict[str, Any]) -> None:
    shown = {alarm_name(logical_id) for logical_id in alarm_ids(dashboard(template)[1])}
    assert {"DatabaseStorageLow", "DatabaseStorageCeiling"} <= shown
