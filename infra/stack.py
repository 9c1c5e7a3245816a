"""The Escalator stack: one ``cdk deploy`` stands up the whole system."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import nag
from infra.alarms import Alarms
from infra.database import Database, DeletionProtection
from infra.functions import EscalatorFunctions
from infra.network import Network
from infra.queue import RequestQueue
from infra.retention import retention
from infra.schedule import DeliverySchedule
from infra.secrets import provider_secrets
from infra.settings import StackSettings, from_context
from infra.state_machine import delivery_definition

INITIATOR_TIMEOUT = Duration.seconds(30)


class EscalatorStack(Stack):
    """Queue, database with its schema, functions, state machine on its schedule, alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = settings or from_context(self.node)
        self.settings = settings

        network = Network(self, "Network", log_retention=retention(settings.log_retention_days))
        database = Database(self, "Database", network=network, settings=settings)
        # Six times the initiator's timeout, as AWS advises for an SQS event source.
        requests = RequestQueue(
            self,
            "RequestQueue",
            visibility_timeout=Duration.seconds(INITIATOR_TIMEOUT.to_seconds() * 6),
        )
        for arn in settings.producer_arns:
            requests.queue.grant_send_messages(iam.ArnPrincipal(arn))

        secrets = provider_secrets(self, settings)
        for secret in secrets.values():
            if isinstance(secret, secretsmanager.Secret):  # created here, not referenced
                # The operator's credentials outlive the stack, but not a failed first
                # deploy: nobody has put them in yet.
                secret.apply_removal_policy(RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE)
        functions = EscalatorFunctions(
            self,
            "Functions",
            network=network,
            database=database,
            provider_secrets=secrets,
            settings=settings,
        )
        functions.initiator.add_event_source(
            event_sources.SqsEventSource(
                requests.queue,
                batch_size=10,
                report_batch_item_failures=True,
                max_concurrency=settings.budget.initiator,
            )
        )

        execution_logs = logs.LogGroup(
            self,
            "DeliveryLogs",
            log_group_name=f"/aws/vendedlogs/states/{construct_id}-delivery",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Named, so that its definition can start it again (the hand-over).
        machine_name = f"{construct_id}-delivery"
        itself = sfn.StateMachine.from_state_machine_name(self, "Itself", machine_name)
        self.state_machine = sfn.StateMachine(
            self,
            "Delivery",
            state_machine_name=machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(
                delivery_definition(
                    self,
                    activator=functions.activator,
                    confirm=functions.confirm,
                    record=functions.record,
                    notifiers=functions.notifiers,
                    itself=itself,
                    max_concurrency=settings.map_concurrency,
                )
            ),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.minutes(30),
            tracing_enabled=True,
            # Execution data holds phone numbers and e-mail addresses: keep it out of logs.
            logs=sfn.LogOptions(
                destination=execution_logs, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        schedule = DeliverySchedule(
            self, "Schedule", state_machine=self.state_machine, minutes=settings.schedule_minutes
        )
        # Requests and executions start once the schema exists (the functions they start
        # wait for the migration too: infra/functions.py).
        schedule.node.add_dependency(functions.migration_trigger)
        Alarms(
            self,
            "Alarms",
            request_queue=requests.queue,
            dead_letter_queue=requests.dead_letter_queue,
            state_machine=self.state_machine,
            schedule_minutes=settings.schedule_minutes,
            topic_arn=settings.alarm_topic_arn,
            unanswered_calls_percent=settings.unanswered_calls_alarm_percent,
        )
        self.functions = functions
        self.database = database
        self.network = network
        self.requests = requests
        self.schedule = schedule

        # Last: once every other resource exists, the database gets its deletion
        # protection (database.DeletionProtection says why not earlier).
        self.deletion_protection: DeletionProtection | None = None
        if settings.db_deletion_protection:
            self.deletion_protection = DeletionProtection(
                self,
                "DatabaseProtection",
                instance=database.instance,
                log_retention=retention(settings.log_retention_days),
            )
            self.deletion_protection.after(list(self.node.children))

        nag.apply(self)

        CfnOutput(self, "RequestQueueUrl", value=requests.queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=requests.dead_letter_queue.queue_url)
        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "DatabaseSecretArn", value=database.secret.secret_arn)
        CfnOutput(
            self,
            "TwilioStatusCallbackUrl",
            value=functions.call_status_url.url,
            description="Where Twilio posts call status callbacks (set on every call)",
        )
