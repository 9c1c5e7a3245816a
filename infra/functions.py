"""The Lambda functions, all built by one helper from the one code asset: the database
functions (in the isolated subnets, with bounded concurrency), the migration that the
stack runs at deploy time, and one notifier per registered channel (outside the VPC,
reading only its own secret)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, RemovalPolicy, triggers
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from escalator import SERVICE
from escalator.channels import CHANNELS
from escalator.config import Env
from infra.bundling import RUNTIME, lambda_code
from infra.network import Network
from infra.retention import retention
from infra.settings import StackSettings

MEMORY_MB = 256
TIMEOUT = Duration.seconds(30)


class EscalatorFunctions(Construct):
    """Every function of the stack; ``database_functions`` are those that connect."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        database: Construct,
        database_name: str,
        database_secret: secretsmanager.ISecret,
        provider_secrets: Mapping[str, secretsmanager.ISecret],
        settings: StackSettings,
    ):
        super().__init__(scope, construct_id)
        self._network = network
        self._code = lambda_code()
        self._retention = retention(settings.log_retention_days)
        budget = settings.budget

        # The RDS secret holds the host, port and credentials, never the database's name.
        connects = {
            Env.DB_SECRET_ARN: database_secret.secret_arn,
            Env.DB_NAME: database_name,
            Env.DB_SSLMODE: "require",
        }
        delivery = {**connects, Env.LOOKAHEAD_SECONDS: str(settings.schedule_seconds)}
        self.initiator = self.function("Initiator", "initiator", environment=connects, in_vpc=True)
        self.activator = self.function(
            "Activator", "activator", environment=delivery, in_vpc=True, reserved=budget.activator
        )
        self.confirm = self.function(
            "Confirm", "confirm", environment=delivery, in_vpc=True, reserved=budget.confirm
        )
        self.record = self.function(
            "Record", "record", environment=delivery, in_vpc=True, reserved=budget.record
        )
        registry = settings.caller_id_registry
        self.migration = self.function(
            "Migrate",
            "migrate",
            environment={**connects, **({Env.CALLER_ID_REGISTRY: registry} if registry else {})},
            in_vpc=True,
            reserved=budget.migrate,
            timeout=Duration.minutes(5),
        )
        self.database_functions = [
            self.initiator,
            self.activator,
            self.confirm,
            self.record,
            self.migration,
        ]
        for function in self.database_functions:
            database_secret.grant_read(function)
        # Runs the migration once the database exists and can be reached (its security
        # group rules and the network's endpoint included), and again at every deploy
        # that changes the code; a failing migration fails the deployment.
        self.migration_trigger = triggers.Trigger(
            self,
            "MigrateTrigger",
            handler=self.migration,
            execute_after=[database, network],
            execute_on_handler_change=True,
        )

        self.notifiers: dict[str, lambda_.Function] = {}
        for name, channel in CHANNELS.items():
            environment = {
                variable: settings.provider[variable]
                for variable in channel.settings.values()
                if variable in settings.provider
            }
            secret = provider_secrets.get(name)
            if secret is not None and channel.secret is not None:
                environment[channel.secret.variable] = secret.secret_arn
            notifier = self.function(
                f"Notifier{name.title()}", "notifier", environment=environment, in_vpc=False
            )
            if secret is not None:
                secret.grant_read(notifier)
            self.notifiers[name] = notifier

    def function(
        self,
        name: str,
        handler: str,
        *,
        environment: Mapping[str, str],
        in_vpc: bool,
        reserved: int | None = None,
        timeout: Duration = TIMEOUT,
    ) -> lambda_.Function:
        """A function running ``escalator.handlers.<handler>.handler``, with its own log
        group; in the isolated subnets, as a database client, when ``in_vpc``."""
        placement: dict[str, Any] = {}
        if in_vpc:
            placement = {
                "vpc": self._network.vpc,
                "vpc_subnets": self._network.subnets,
                "security_groups": [self._network.database_clients],
            }
        log_group = logs.LogGroup(
            self, f"{name}Logs", retention=self._retention, removal_policy=RemovalPolicy.DESTROY
        )
        return lambda_.Function(
            self,
            name,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            code=self._code,
            handler=f"escalator.handlers.{handler}.handler",
            timeout=timeout,
            memory_size=MEMORY_MB,
            reserved_concurrent_executions=reserved,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={Env.POWERTOOLS_SERVICE_NAME: SERVICE, **environment},
            **placement,
        )
