"""Alarms an operator needs, sent to an optional SNS topic."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from escalator import metrics


class Alarms(Construct):
    """Dead letters, failed or timed-out executions, failing notifications, and a
    schedule that stopped starting executions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dead_letter_queue: sqs.IQueue,
        state_machine: sfn.StateMachine,
        schedule_minutes: int,
        topic_arn: str | None,
    ):
        super().__init__(scope, construct_id)
        five_minutes = Duration.minutes(5)
        self.alarms = [
            dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=five_minutes, statistic="Maximum"
            ).create_alarm(
                self,
                "DeadLetters",
                alarm_description="Requests failed 5 times and wait in the dead-letter queue",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            ),
            state_machine.metric_failed(period=five_minutes).create_alarm(
                self,
                "ExecutionsFailed",
                alarm_description="A delivery execution failed",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            state_machine.metric_timed_out(period=five_minutes).create_alarm(
                self,
                "ExecutionsTimedOut",
                alarm_description="A delivery execution timed out",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Metric(
                namespace=metrics.NAMESPACE,
                metric_name=metrics.FAILED,
                dimensions_map={"service": "escalator"},
                statistic="Sum",
                period=five_minutes,
            ).create_alarm(
                self,
                "NotificationsFailing",
                alarm_description="Notifications are failing to be delivered",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            state_machine.metric_started(
                period=Duration.minutes(max(5, schedule_minutes * 3))
            ).create_alarm(
                self,
                "ScheduleNotRunning",
                alarm_description="The schedule has not started a delivery execution",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            ),
        ]
        if topic_arn:
            topic = sns.Topic.from_topic_arn(self, "Topic", topic_arn)
            for alarm in self.alarms:
                alarm.add_alarm_action(actions.SnsAction(topic))
