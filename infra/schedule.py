"""EventBridge Scheduler starts the delivery state machine every period, and the purge
every hour."""

from __future__ import annotations

import json

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


def scheduler_role(scope: Construct, description: str) -> iam.Role:
    """The role a schedule of ``scope`` acts with; only schedules of this account may use
    it (no confused deputy)."""
    return iam.Role(
        scope,
        "Role",
        assumed_by=iam.ServicePrincipal(
            "scheduler.amazonaws.com",
            conditions={"StringEquals": {"aws:SourceAccount": Stack.of(scope).account}},
        ),
        description=description,
    )


class DeliverySchedule(Construct):
    """``rate(N minutes)``, passing ``period_seconds`` so the claim's lookahead matches."""

    def __init__(
        self, scope: Construct, construct_id: str, *, state_machine: sfn.IStateMachine, minutes: int
    ):
        super().__init__(scope, construct_id)
        role = scheduler_role(
            self, "EventBridge Scheduler starts the Escalator delivery state machine"
        )
        state_machine.grant_start_execution(role)
        unit = "minute" if minutes == 1 else "minutes"
        self.expression = f"rate({minutes} {unit})"
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description="Claim and deliver the notifications that fall due",
            schedule_expression=self.expression,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=state_machine.state_machine_arn,
                role_arn=role.role_arn,
                input=json.dumps({"period_seconds": minutes * 60}),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=0, maximum_event_age_in_seconds=60
                ),
            ),
        )


class PurgeSchedule(Construct):
    """``rate(1 hour)``: EventBridge Scheduler invokes the purge function."""

    EXPRESSION = "rate(1 hour)"

    def __init__(self, scope: Construct, construct_id: str, *, function: lambda_.IFunction):
        super().__init__(scope, construct_id)
        role = scheduler_role(self, "EventBridge Scheduler invokes the Escalator purge")
        function.grant_invoke(role)
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description="Delete what finished longer ago than the retention period",
            schedule_expression=self.EXPRESSION,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(
                mode="FLEXIBLE", maximum_window_in_minutes=15
            ),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=function.function_arn,
                role_arn=role.role_arn,
                input="{}",
                # (a purge that did not run is no loss: the next hour's deletes the same)
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=0, maximum_event_age_in_seconds=600
                ),
            ),
        )
