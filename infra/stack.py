"""The Escalator stack: one ``cdk deploy`` stands up the whole system."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from escalator import metrics
from escalator.channels import RECIPIENT_CHANNELS
from escalator.config import Env
from escalator.limits import claim_lookahead
from infra import nag
from infra.alarms import Alarms
from infra.dashboard import OperationsDashboard
from infra.database import Database, DeletionProtection
from infra.functions import DATABASE_STEP_TIMEOUT, NOTIFIER_TIMEOUT, EscalatorFunctions
from infra.network import Network
from infra.queue import RequestQueue
from infra.retention import retention
from infra.schedule import DeliverySchedule, PurgeSchedule
from infra.secrets import provider_secrets
from infra.settings import SettingsError, StackSettings, from_context
from infra.state_machine import tick_definition, window_definition, window_worst_case_seconds
from infra.timings import EXPRESS_CAP_SECONDS

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
        requests.feed(functions.initiator, batch_size=10, max_concurrency=settings.budget.initiator)

        self.window, self.state_machine = self._delivery(construct_id, functions, settings)
        # Near-due arrivals: the initiator starts a delivery window of their own at once.
        self.window.grant_start_execution(functions.initiator)
        functions.initiator.add_environment(Env.DELIVERY_WINDOW_ARN, self.window.state_machine_arn)
        schedule = DeliverySchedule(
            self, "Schedule", state_machine=self.state_machine, minutes=settings.schedule_minutes
        )
        # Requests and executions start once the schema exists (the functions they start
        # wait for the migration too: infra/functions.py).
        schedule.node.add_dependency(functions.migration_trigger)
        self.purge_schedule = PurgeSchedule(self, "PurgeSchedule", function=functions.purge)
        alarms = Alarms(
            self,
            "Alarms",
            request_queue=requests.queue,
            dead_letter_queue=requests.dead_letter_queue,
            state_machine=self.state_machine,
            window=self.window,
            database=database.instance,
            free_storage_bytes=settings.free_storage_alarm_bytes,
            log_retention=retention(settings.log_retention_days),
            schedule_minutes=settings.schedule_minutes,
            topic_arn=settings.alarm_topic_arn,
            failed_percent=settings.unanswered_calls_alarm_percent,
        )
        # Generated from the metric registry, the functions, the channels and the alarms.
        self.dashboard = OperationsDashboard(
            self,
            "Operations",
            dashboard_name=f"{construct_id}-{Aws.REGION}",
            request_queue=requests.queue,
            dead_letter_queue=requests.dead_letter_queue,
            tick=self.state_machine,
            window=self.window,
            # (not the purge's: one run an hour, a throttled one done by the next; the
            # dashboard holds the fifty metrics a free one may)
            functions=[f for f in functions.all_functions if f is not functions.purge],
            alarms=alarms.alarms,
            breakdowns={metrics.CHANNEL: RECIPIENT_CHANNELS},
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
        CfnOutput(self, "DeliveryWindowArn", value=self.window.state_machine_arn)
        CfnOutput(self, "DatabaseSecretArn", value=database.secret.secret_arn)
        CfnOutput(
            self,
            "DashboardUrl",
            value=self.dashboard.url,
            description="The operators' CloudWatch dashboard",
        )
        CfnOutput(
            self,
            "TwilioStatusCallbackUrl",
            value=functions.call_status_url.url,
            description="Where Twilio posts status callbacks (set on every call and text message)",
        )

    def _delivery(
        self, construct_id: str, functions: EscalatorFunctions, settings: StackSettings
    ) -> tuple[sfn.StateMachine, sfn.StateMachine]:
        """The delivery window (Express) and the tick that the schedule starts (Standard)."""
        lookahead = claim_lookahead(settings.schedule_seconds)
        worst = window_worst_case_seconds(
            lookahead_seconds=lookahead,
            database_step_timeout=int(DATABASE_STEP_TIMEOUT.to_seconds()),
            notifier_timeout=int(NOTIFIER_TIMEOUT.to_seconds()),
        )
        if worst > EXPRESS_CAP_SECONDS:
            raise SettingsError(
                f"context schedule_minutes {settings.schedule_minutes} is too long: a tick "
                f"claims {lookahead} s ahead, and a delivery window (an Express execution, "
                f"at most {EXPRESS_CAP_SECONDS} s) would need up to {worst} s"
            )

        def log_group(logical_id: str, machine_name: str) -> logs.LogGroup:
            # (under /aws/vendedlogs/: Step Functions writes it without a resource policy)
            return logs.LogGroup(
                self,
                logical_id,
                log_group_name=f"/aws/vendedlogs/states/{machine_name}",
                retention=retention(settings.log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            )

        window = sfn.StateMachine(
            self,
            "DeliveryWindow",
            state_machine_name=f"{construct_id}-delivery-window",
            definition_body=sfn.DefinitionBody.from_chainable(
                window_definition(
                    Construct(self, "WindowStates"),
                    confirm=functions.confirm,
                    record=functions.record,
                    notifiers=functions.notifiers,
                    max_concurrency=settings.map_concurrency,
                )
            ),
            state_machine_type=sfn.StateMachineType.EXPRESS,
            timeout=Duration.seconds(EXPRESS_CAP_SECONDS),
            tracing_enabled=True,
            # An Express execution has no history to look at: its log is it. ERROR by
            # default (a failed window is logged whole; a delivery costs nothing to log);
            # delivery_log_level ALL logs every step, for a closer look. Execution data
            # holds phone numbers and e-mail addresses: it stays out of the logs.
            logs=sfn.LogOptions(
                destination=log_group("DeliveryWindowLogs", f"{construct_id}-delivery-window"),
                level=sfn.LogLevel(settings.delivery_log_level),
                include_execution_data=False,
            ),
        )
        # Named, so that its definition can start it again (the hand-over).
        machine_name = f"{construct_id}-delivery"
        itself = sfn.StateMachine.from_state_machine_name(self, "Itself", machine_name)
        tick = sfn.StateMachine(
            self,
            "Delivery",
            state_machine_name=machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(
                tick_definition(self, activator=functions.activator, window=window, itself=itself)
            ),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.minutes(30),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=log_group("DeliveryLogs", machine_name),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
        )
        return window, tick
