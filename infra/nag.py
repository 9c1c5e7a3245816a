"""cdk-nag (AwsSolutions) findings that are accepted on purpose, each with its reason."""

from __future__ import annotations

from typing import Any

from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

from escalator.channels import CHANNELS
from infra.database import is_sdk_call_provider

LAMBDA_MANAGED_POLICIES = [
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
]


def _suppress(construct: IConstruct, *suppressions: NagPackSuppression) -> None:
    NagSuppressions.add_resource_suppressions(construct, list(suppressions), apply_to_children=True)


def function_suppressions() -> list[NagPackSuppression]:
    return [
        NagPackSuppression(
            id="AwsSolutions-L1",
            reason="The runtime is pinned to python3.12: the bundle's binary wheels "
            "(psycopg2-binary, aiohttp) are built for exactly that version.",
        ),
        NagPackSuppression(
            id="AwsSolutions-IAM4",
            reason="CDK's standard Lambda service role: CloudWatch Logs writes and, for the "
            "functions in the VPC, the network interfaces; nothing else.",
            applies_to=list(LAMBDA_MANAGED_POLICIES),
        ),
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords accept "
            "no resource but '*'.",
            applies_to=["Resource::*"],
        ),
    ]


def apply(stack: Any) -> None:
    """Record the accepted findings on the constructs of an ``EscalatorStack``."""
    functions = stack.functions
    for function in [
        *functions.database_functions,
        functions.launcher,
        functions.call_status_receiver,
        *functions.notifiers.values(),
    ]:
        _suppress(function, *function_suppressions())
    _suppress(
        stack.state_machine,
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="Step Functions log delivery (logs:*LogDelivery, PutResourcePolicy, "
            "Describe*) and X-Ray accept no resource but '*'; function invocations are granted "
            "on the functions' ARNs and their versions (ARN:*) only; the delivery window's "
            "executions (to follow and stop the one a tick started) are named by the "
            "window's ARN and an execution name (execution:<window>:*) only.",
            applies_to=[
                "Resource::*",
                {"regex": "/^Resource::<Functions[A-Za-z0-9]+\\.Arn>:\\*$/g"},
                {"regex": "/^Resource::arn:<AWS::Partition>:states:.*:execution:.*Window.*$/g"},
            ],
        ),
    )
    _suppress(
        stack.window,
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="Step Functions log delivery (logs:*LogDelivery, PutResourcePolicy, "
            "Describe*) and X-Ray accept no resource but '*'; function invocations are granted "
            "on the functions' ARNs and their versions (ARN:*) only.",
            applies_to=[
                "Resource::*",
                {"regex": "/^Resource::<Functions[A-Za-z0-9]+\\.Arn>:\\*$/g"},
            ],
        ),
        NagPackSuppression(
            id="AwsSolutions-SF1",
            reason="An Express window logs ERROR by default: failed windows are logged whole, "
            "and a delivery adds nothing to the idle bill; the context delivery_log_level=ALL "
            "logs every step for a closer look. Each notification's outcome is in the "
            "database and in the tick's output.",
        ),
    )
    _suppress(
        stack.database,
        NagPackSuppression(
            id="AwsSolutions-RDS3",
            reason="Single-AZ by default to keep the idle cost low; set the context "
            "db_multi_az=true for a standby. Backups and deletion protection are on.",
        ),
        NagPackSuppression(
            id="AwsSolutions-RDS11",
            reason="The database has no public endpoint: isolated subnets, and a security "
            "group that admits only the database functions. A custom port adds nothing.",
        ),
        NagPackSuppression(
            id="AwsSolutions-SMG4",
            reason="Only the migration uses the master secret (every function signs in with "
            "an IAM database token); rotating it needs a rotation function that reaches "
            "Secrets Manager from the isolated subnets, an interface endpoint the idle "
            "budget leaves out.",
        ),
    )
    _suppress(
        stack.network,
        NagPackSuppression(
            id="CdkNagValidationFailure",
            reason="AwsSolutions-EC23 cannot read ingress rules whose source is a security "
            "group token; every ingress here comes from the database functions' group, no CIDR.",
        ),
    )
    for channel in CHANNELS.values():
        secret = stack.node.try_find_child(channel.secret.name) if channel.secret else None
        if secret is not None:
            _suppress(
                secret,
                NagPackSuppression(
                    id="AwsSolutions-SMG4",
                    reason="Third-party credentials: they are rotated in the provider's "
                    "console and then written to this secret by the operator.",
                ),
            )
    # CDK's log-retention function, which sets the retention of the log group RDS
    # creates for the database's logs (the stack cannot create that group itself).
    _suppress(
        stack.purge_schedule,
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="CDK's grant_invoke covers the purge function and its versions (ARN:*); the "
            "schedule's role may invoke that one function only.",
            applies_to=[{"regex": "/^Resource::<FunctionsPurge[A-Za-z0-9]+\\.Arn>:\\*$/g"}],
        ),
    )
    _suppress(
        functions.launcher,
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="CDK's grant_invoke covers the migration function and its versions "
            "(ARN:*); the launcher may invoke that one function only.",
            applies_to=[{"regex": "/^Resource::<FunctionsMigrate[A-Za-z0-9]+\\.Arn>:\\*$/g"}],
        ),
    )
    _suppress(
        functions.call_status_receiver,
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="CDK's grant_invoke covers the call-status recorder and its versions "
            "(ARN:*); the receiver may invoke that one function only.",
            applies_to=[
                {"regex": "/^Resource::<FunctionsCallStatusRecorder[A-Za-z0-9]+\\.Arn>:\\*$/g"}
            ],
        ),
    )
    if stack.deletion_protection is not None:
        _suppress(
            stack.database.instance,
            NagPackSuppression(
                id="AwsSolutions-RDS10",
                reason="Deletion protection is switched on by the deploy's last step "
                "(DatabaseProtection), not in the template: CloudFormation cannot delete a "
                "protected instance when a failed first deploy rolls back.",
            ),
        )
        _suppress(
            next(child for child in stack.node.children if is_sdk_call_provider(child)),
            NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason="CDK's AwsCustomResource function that switches deletion protection "
                "on: the standard Lambda role, logs only.",
                applies_to=[LAMBDA_MANAGED_POLICIES[0]],
            ),
        )
    retention_function = next(
        (child for child in stack.node.children if child.node.id.startswith("LogRetention")),
        None,
    )
    if retention_function is not None:
        _suppress(
            retention_function,
            NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason="CDK's log-retention function: the standard Lambda role, logs only.",
                applies_to=[LAMBDA_MANAGED_POLICIES[0]],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="logs:PutRetentionPolicy and DeleteRetentionPolicy on the log group RDS "
                "names at creation time; CDK's function grants them on '*'.",
                applies_to=["Resource::*"],
            ),
        )
