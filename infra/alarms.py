"""Alarms an operator needs, sent to an optional SNS topic."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from escalator import SERVICE, metrics
from escalator.channels import CHANNELS
from escalator.channels.base import ProviderStatuses
from infra.settings import GIB

# A request older than this in the queue means the initiator is not keeping up.
OLDEST_REQUEST_SECONDS = 300
FIVE_MINUTES = Duration.minutes(5)
AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
BELOW = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
# The RDS events of the instance that say its storage is near or at the autoscaling
# ceiling, or that autoscaling cannot grow it (AWS, "Amazon RDS event categories and
# event messages"). Not RDS-EVENT-0089 (more than 90 % of the volume used): it comes
# before every ordinary autoscaling step.
STORAGE_EVENTS = {
    "RDS-EVENT-0225": "the allocated storage reached 80 % of db_max_allocated_storage_gib",
    "RDS-EVENT-0224": "an autoscaling step would reach or pass db_max_allocated_storage_gib",
    "RDS-EVENT-0223": "storage autoscaling cannot grow the volume (the event says why)",
    "RDS-EVENT-0254": "the account's storage quota stops storage autoscaling",
    "RDS-EVENT-0007": "the allocated storage is exhausted",
}
# Where those events are counted (not the functions' namespace: its metrics are the
# registry's, escalator.metrics).
STORAGE_EVENTS_NAMESPACE = f"{metrics.NAMESPACE}/Database"
STORAGE_EVENTS_METRIC = "StorageEvents"


class Alarms(Construct):
    """Dead letters, requests waiting too long, failed or timed-out executions, failing,
    expired, unknown or rejected notifications, too many unanswered calls, a schedule
    that stopped starting executions, and a database running out of storage."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        request_queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        state_machine: sfn.StateMachine,
        window: sfn.StateMachine,
        database: rds.DatabaseInstance,
        free_storage_bytes: int,
        log_retention: logs.RetentionDays,
        schedule_minutes: int,
        topic_arn: str | None,
        failed_percent: int = 50,
    ):
        super().__init__(scope, construct_id)
        alarm = self._alarm
        storage_events = StorageEvents(
            self, "StorageEvents", instance=database, log_retention=log_retention
        )
        self.alarms = [
            alarm(
                "DeadLetters",
                dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=FIVE_MINUTES, statistic="Maximum"
                ),
                "Requests outlasted the queue's receive budget and wait in the dead-letter "
                "queue: redrive them (escalator dlq redrive)",
            ),
            alarm(
                "RequestsWaiting",
                request_queue.metric_approximate_age_of_oldest_message(
                    period=FIVE_MINUTES, statistic="Maximum"
                ),
                f"A request has waited more than {OLDEST_REQUEST_SECONDS} s in the queue",
                threshold=OLDEST_REQUEST_SECONDS,
            ),
            alarm(
                "ExecutionsFailed",
                state_machine.metric_failed(period=FIVE_MINUTES),
                "A delivery execution failed",
            ),
            alarm(
                "ExecutionsTimedOut",
                state_machine.metric_timed_out(period=FIVE_MINUTES),
                "A delivery execution timed out",
            ),
            # The window's own metrics: one failed or ran out of its five minutes (a
            # tick's, which also fails the tick, or one the initiator started).
            alarm(
                "WindowsFailed",
                window.metric_failed(period=FIVE_MINUTES),
                "A delivery window failed: what a tick's had not confirmed went back to the "
                "next tick at once (an arrival's, after the claim grace); what it was "
                "sending ends unknown",
            ),
            # What AWS counts nowhere: a window that never started (refused, throttled).
            alarm(
                "DeliveryWindowsFailed",
                escalator_metric(metrics.WINDOWS_FAILED),
                "A delivery window failed or never started: its claims went back to the "
                "ticks at once (the tick's summary or the initiator's log says why)",
            ),
            alarm(
                "WindowsTimedOut",
                window.metric_timed_out(period=FIVE_MINUTES),
                "A delivery window ran out of its five minutes (Express)",
            ),
            alarm(
                "NotificationsFailing",
                escalator_metric(metrics.FAILED),
                "Notifications are failing to be delivered",
            ),
            alarm(
                "NotificationsExpired",
                escalator_metric(metrics.EXPIRED),
                "Notifications expired: they were due too long ago to be delivered",
            ),
            alarm(
                "NotificationsUnknown",
                escalator_metric(metrics.UNKNOWN),
                "Notifications ended unknown: sent, but no outcome was recorded",
            ),
            alarm(
                "NotificationsRejected",
                escalator_metric(metrics.REJECTED),
                "Starts arrived with unusable targets: those notifications will not be sent",
            ),
            # One per provider that reports on its deliveries (Twilio: calls, text
            # messages): one metric, 0 or 100 per delivery that ended, whose average is
            # the failed share (one alarm metric each).
            *(
                self._failed_share_alarm(channel.callbacks.statuses, failed_percent)
                for channel in CHANNELS.values()
                if channel.callbacks is not None
            ),
            alarm(
                "ScheduleNotRunning",
                state_machine.metric_started(period=Duration.minutes(max(5, schedule_minutes * 3))),
                "The schedule has not started a delivery execution",
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                missing=cloudwatch.TreatMissingData.BREACHING,
            ),
            # Storage autoscaling grows the volume once free space is down to 10 % of it
            # (for 5 minutes): never below 10 % of the first allocation while it can still
            # act. Less than a share of that means it cannot (infra/settings.py).
            alarm(
                "DatabaseStorageLow",
                database.metric_free_storage_space(period=FIVE_MINUTES, statistic="Minimum"),
                f"The database has less than {free_storage_bytes / GIB:g} GiB of free "
                "storage, less than storage autoscaling leaves while it can still grow the "
                "volume: it reached db_max_allocated_storage_gib, waits out its cooling-off "
                "(6 hours after a step) or failed (the instance's RDS events say which; "
                f"those of its ceiling are in the log group {storage_events.log_group_name}). "
                "Raise db_max_allocated_storage_gib and deploy; then see what fills the "
                "database (escalator db stats) and whether the hourly purge keeps up (its "
                "log; escalator db purge --older-than DURATION --dry-run)",
                comparison=BELOW,
                threshold=free_storage_bytes,
            ),
            # CloudWatch has no metric of an instance's allocated storage: RDS says when
            # autoscaling nears its ceiling in events, which StorageEvents counts.
            alarm(
                "DatabaseStorageCeiling",
                storage_events.metric,
                "RDS reported the database's storage near or at its autoscaling ceiling, "
                "or autoscaling unable to grow it: "
                + "; ".join(f"{event}: {meaning}" for event, meaning in STORAGE_EVENTS.items())
                + f" (each event is in the log group {storage_events.log_group_name}). "
                "Raise db_max_allocated_storage_gib and deploy; then see what fills the "
                "database (escalator db stats) and whether the hourly purge keeps up (its "
                "log; escalator db purge --older-than DURATION --dry-run)",
            ),
        ]
        if topic_arn:
            topic = sns.Topic.from_topic_arn(self, "Topic", topic_arn)
            for created in self.alarms:
                created.add_alarm_action(actions.SnsAction(topic))

    def _alarm(
        self,
        alarm_id: str,
        metric: cloudwatch.Metric,
        description: str,
        comparison: cloudwatch.ComparisonOperator = AT_LEAST,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
        threshold: int = 1,
    ) -> cloudwatch.Alarm:
        """An alarm on one period of ``metric`` (quiet is fine unless ``missing`` says)."""
        return metric.create_alarm(
            self,
            alarm_id,
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=comparison,
            treat_missing_data=missing,
        )

    def _failed_share_alarm(self, statuses: ProviderStatuses, percent: int) -> cloudwatch.Alarm:
        """More than ``percent`` % of the deliveries that ended within 15 minutes failed,
        as the provider reported them (``CallsUnanswered``, ``MessagesUndelivered``)."""
        (statistic,) = metrics.registry()[statuses.failed_share_metric].statistics
        return self._alarm(
            statuses.failed_share_metric.removesuffix("Percent"),
            escalator_metric(
                statuses.failed_share_metric, statistic=statistic, period=Duration.minutes(15)
            ),
            f"More than {percent} % of the {statuses.noun} that ended in 15 minutes "
            f"{statuses.failed_meaning} ({', '.join(sorted(statuses.failed))})",
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            threshold=percent,
        )


class StorageEvents(Construct):
    """The instance's ``STORAGE_EVENTS`` as a metric (``metric``: how many in 5 minutes):
    an EventBridge rule writes each to a log group of its own, whose metric filter counts
    every line."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        instance: rds.DatabaseInstance,
        log_retention: logs.RetentionDays,
    ):
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.log_group_name = f"/aws/events/{stack.stack_name}/database-storage"
        log_group = logs.LogGroup(
            self,
            "Log",
            log_group_name=self.log_group_name,
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # EventBridge writes to a log group by a resource policy of CloudWatch Logs (no
        # role), in place before the rule sends anything.
        policy = logs.ResourcePolicy(
            self,
            "Policy",
            policy_statements=[
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.log_group_arn],
                )
            ],
        )
        rule = events.CfnRule(
            self,
            "Rule",
            description="The database's storage near or at its autoscaling ceiling",
            event_pattern={
                "source": ["aws.rds"],
                "detail-type": ["RDS DB Instance Event"],
                "detail": {
                    "SourceIdentifier": [instance.instance_identifier],
                    "EventID": list(STORAGE_EVENTS),
                },
            },
            targets=[
                events.CfnRule.TargetProperty(
                    id="Log",
                    # (the log group's own ARN, without the ":*" of its Arn attribute)
                    arn=stack.format_arn(
                        service="logs",
                        resource="log-group",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        resource_name=log_group.log_group_name,
                    ),
                )
            ],
        )
        rule.node.add_dependency(policy)
        logs.MetricFilter(
            self,
            "Count",
            log_group=log_group,
            filter_pattern=logs.FilterPattern.all_events(),
            metric_namespace=STORAGE_EVENTS_NAMESPACE,
            metric_name=STORAGE_EVENTS_METRIC,
            metric_value="1",
        )
        self.metric = cloudwatch.Metric(
            namespace=STORAGE_EVENTS_NAMESPACE,
            metric_name=STORAGE_EVENTS_METRIC,
            statistic="Sum",
            period=FIVE_MINUTES,
        )


def escalator_metric(
    name: str,
    *,
    statistic: str = "Sum",
    period: Duration = FIVE_MINUTES,
    label: str | None = None,
    **dimensions: str,
) -> cloudwatch.Metric:
    """A metric of the ``Escalator`` namespace: its ``service`` series, or that of
    ``dimensions`` too (what ``escalator.metrics`` writes; the alarms and the dashboard
    read it alike)."""
    return cloudwatch.Metric(
        namespace=metrics.NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE, **dimensions},
        statistic=statistic,
        period=period,
        label=label,
    )
