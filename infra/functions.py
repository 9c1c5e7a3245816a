"""The Lambda functions, all built by one helper from the one code asset: the database
functions (in the VPC's private subnets, with bounded concurrency), the migration that the
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
from escalator.config import DB_SSLMODE_DEFAULT, RDS_CA_BUNDLE_FILE, Env
from escalator.limits import claim_lookahead
from escalator.migrations import APPLICATION_ROLE, PURGE_ROLE
from infra.bundling import RUNTIME, deployed_path, lambda_code
from infra.database import Database
from infra.network import Network
from infra.retention import retention
from infra.secrets import grant_secret_value
from infra.settings import StackSettings
from infra.timings import Leases, default_leases, minimum_leases

MEMORY_MB = 256
TIMEOUT = Duration.seconds(30)
# The steps of a delivery window (an Express execution, at most five minutes) are timed
# to fit it (infra.state_machine.window_worst_case_seconds): confirm and record do
# milliseconds of database work (confirm waits out at most 5 s of the due second); a
# notifier waits at most 10 s for its provider.
DATABASE_STEP_TIMEOUT = Duration.seconds(10)
NOTIFIER_TIMEOUT = Duration.seconds(20)
MIGRATION_TIMEOUT = Duration.minutes(5)
# An hourly purge deletes batches for up to this long, then leaves the rest to the next.
PURGE_TIMEOUT = Duration.minutes(5)
# Each waiter outlasts what it waits for, so that an answer, even a timeout, arrives
# before the waiter gives up (and no waiter retries a migration that may still run):
# the launcher's client waits the migration's timeout and a margin
# (``escalator.bootstrap``), the launcher the client's wait, and the trigger, whose
# client would invoke the launcher again once its socket has been idle this long, the
# launcher's timeout.
LAUNCHER_TIMEOUT = MIGRATION_TIMEOUT.plus(Duration.minutes(1))
TRIGGER_TIMEOUT = LAUNCHER_TIMEOUT.plus(Duration.minutes(1))
CALLBACK_RECEIVER_CONCURRENCY = 5


def stack_leases(lookahead_seconds: int) -> Leases:
    """The claim grace and sending lease the stack's functions run with: the delivery
    settings' defaults, raised where the rule of ``infra.timings`` asks for more."""
    minimum = minimum_leases(
        lookahead_seconds=lookahead_seconds,
        database_step_timeout=int(DATABASE_STEP_TIMEOUT.to_seconds()),
        notifier_timeout=int(NOTIFIER_TIMEOUT.to_seconds()),
    )
    return default_leases().at_least(minimum)


class EscalatorFunctions(Construct):
    """Every function of the stack; ``database_functions`` are those that connect."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        database: Database,
        provider_secrets: Mapping[str, secretsmanager.ISecret],
        settings: StackSettings,
    ):
        super().__init__(scope, construct_id)
        # Every function built here, in order (the dashboard shows each one's throttles).
        self.all_functions: list[lambda_.Function] = []
        self._network = network
        self._code = lambda_code()
        self._retention = retention(settings.log_retention_days)
        instance = database.instance
        address = {
            Env.DB_HOST: instance.db_instance_endpoint_address,
            Env.DB_PORT: instance.db_instance_endpoint_port,
            Env.DB_NAME: database.database_name,
            # TLS, verified: the instance's certificate must chain to a root of the RDS CA
            # bundle shipped in the code asset and name the endpoint connected to.
            Env.DB_SSLMODE: DB_SSLMODE_DEFAULT,
            Env.DB_SSLROOTCERT: deployed_path(RDS_CA_BUNDLE_FILE),
        }
        self._runtime(address, settings)
        self._call_status(settings, provider_secrets)
        self.runtime_functions = [
            self.initiator,
            self.activator,
            self.confirm,
            self.record,
            self.call_status_recorder,
        ]
        for function in self.runtime_functions:
            instance.grant_connect(function, APPLICATION_ROLE)
        self._migration(address, database, network, settings)
        self._purge(settings)
        instance.grant_connect(self.purge, PURGE_ROLE)
        self.purge.node.add_dependency(self.migration_trigger)
        self.database_functions = [*self.runtime_functions, self.migration, self.purge]
        # A schema change migrates before new code takes traffic: CloudFormation creates
        # or updates the runtime functions (and what starts them) only after the trigger.
        # The code still running meanwhile meets the newer schema, which is why
        # migrations only add (tests/unit/test_expand_only_migrations.py).
        for function in self.runtime_functions:
            function.node.add_dependency(self.migration_trigger)
        self._notifiers(settings, provider_secrets)

    def _runtime(self, address: Mapping[str, str], settings: StackSettings) -> None:
        """The initiator and the state machine's database steps: in the VPC, each with
        its share of the connection budget."""
        budget = settings.budget
        # The runtime functions connect as the application role with an IAM token they
        # sign themselves: no secret, no Secrets Manager endpoint, no password.
        self._connects = {**address, Env.DB_IAM_AUTH: "true", Env.DB_USER: APPLICATION_ROLE}
        # A tick claims two periods ahead (the schedule fires anywhere within a period);
        # the initiator delivers at once what arrives due sooner than a tick can be
        # trusted to claim it.
        lookahead = claim_lookahead(settings.schedule_seconds)
        leases = stack_leases(lookahead)
        claims = {
            Env.LOOKAHEAD_SECONDS: str(lookahead),
            Env.CLAIM_GRACE_SECONDS: str(leases.claim_grace_seconds),
        }
        delivery = {
            **self._connects,
            **claims,
            Env.SENDING_LEASE_SECONDS: str(leases.sending_lease_seconds),
        }
        self.initiator = self.function(
            "Initiator",
            "initiator",
            environment={**self._connects, **claims},
            in_vpc=True,
            calls_aws=True,
        )
        self.activator = self.function(
            "Activator", "activator", environment=delivery, in_vpc=True, reserved=budget.activator
        )
        guard = {Env.RECIPIENT_GUARD_SECONDS: str(settings.recipient_guard_seconds)}
        self.confirm = self.function(
            "Confirm",
            "confirm",
            environment={**delivery, **guard},
            in_vpc=True,
            reserved=budget.confirm,
            timeout=DATABASE_STEP_TIMEOUT,
        )
        self.record = self.function(
            "Record",
            "record",
            environment=delivery,
            in_vpc=True,
            reserved=budget.record,
            timeout=DATABASE_STEP_TIMEOUT,
        )

    def _call_status(
        self, settings: StackSettings, provider_secrets: Mapping[str, secretsmanager.ISecret]
    ) -> None:
        """The providers' status callbacks (Twilio's): a public function URL (nothing
        billed while idle) on a receiver outside the VPC that holds the secrets of the
        channels with callbacks and checks each callback's signature, handing verified
        reports to a recorder in the VPC that writes the database."""
        secrets = {
            channel.secret.variable: provider_secrets[name]
            for name, channel in CHANNELS.items()
            if channel.callbacks is not None
            and channel.secret is not None
            and name in provider_secrets
        }
        self.call_status_recorder = self.function(
            "CallStatusRecorder",
            "record_call_status",
            environment=self._connects,
            in_vpc=True,
            reserved=settings.budget.call_status,
        )
        self.call_status_receiver = self.function(
            "CallStatusReceiver",
            "call_status",
            environment={
                Env.CALL_STATUS_FUNCTION: self.call_status_recorder.function_name,
                **{variable: secret.secret_arn for variable, secret in secrets.items()},
            },
            in_vpc=False,
            # Each delivery reports up to four statuses; this bounds a burst of them (and
            # what a flood of forged requests could cost) without touching the budget.
            reserved=CALLBACK_RECEIVER_CONCURRENCY,
        )
        for secret in secrets.values():
            grant_secret_value(secret, self.call_status_receiver)
        self.call_status_recorder.grant_invoke(self.call_status_receiver)
        self.call_status_url = self.call_status_receiver.add_function_url(
            auth_type=lambda_.FunctionUrlAuthType.NONE
        )

    def _migration(
        self,
        address: Mapping[str, str],
        database: Database,
        network: Network,
        settings: StackSettings,
    ) -> None:
        """The migration, run as the master user, whose credentials only the launcher
        (outside the VPC) reads and hands over in the invocation; and the trigger that
        runs the launcher at deploy time."""
        registry = settings.caller_id_registry
        self.migration = self.function(
            "Migrate",
            "migrate",
            environment={**address, **({Env.CALLER_ID_REGISTRY: registry} if registry else {})},
            in_vpc=True,
            reserved=settings.budget.migrate,
            timeout=MIGRATION_TIMEOUT,
        )
        self.launcher = self.function(
            "MigrateLauncher",
            "launch_migration",
            environment={
                Env.DB_SECRET_ARN: database.secret.secret_arn,
                Env.MIGRATION_FUNCTION: self.migration.function_name,
                Env.MIGRATION_TIMEOUT_SECONDS: str(int(MIGRATION_TIMEOUT.to_seconds())),
            },
            in_vpc=False,
            timeout=LAUNCHER_TIMEOUT,
        )
        grant_secret_value(database.secret, self.launcher)
        self.migration.grant_invoke(self.launcher)
        # Runs the launcher once the database exists and can be reached (its security
        # group rules included), and again at every deploy that changes the code; a
        # failing migration fails the deployment.
        self.migration_trigger = triggers.Trigger(
            self,
            "MigrateTrigger",
            handler=self.launcher,
            execute_after=[database, network],
            execute_on_handler_change=True,
            timeout=TRIGGER_TIMEOUT,
        )

    def _purge(self, settings: StackSettings) -> None:
        """The hourly purge of what finished longer ago than the retention period: in the
        VPC, connecting as the purge's role (it may read and delete, nothing else), one at
        a time."""
        self.purge = self.function(
            "Purge",
            "purge",
            environment={
                **self._connects,
                Env.DB_USER: PURGE_ROLE,
                Env.RETENTION_DAYS: str(settings.retention_days),
            },
            in_vpc=True,
            reserved=settings.budget.purge,
            timeout=PURGE_TIMEOUT,
        )

    def _notifiers(
        self, settings: StackSettings, provider_secrets: Mapping[str, secretsmanager.ISecret]
    ) -> None:
        """One notifier per registered channel, outside the VPC, reading only its own
        provider's settings and secret."""
        self.notifiers: dict[str, lambda_.Function] = {}
        for name, channel in CHANNELS.items():
            environment = {
                variable: settings.provider[variable]
                for variable in channel.settings.values()
                if variable in settings.provider
            }
            if channel.callbacks is not None:
                environment[channel.callbacks.url_variable] = self.call_status_url.url
            secret = provider_secrets.get(name)
            if secret is not None and channel.secret is not None:
                environment[channel.secret.variable] = secret.secret_arn
            notifier = self.function(
                f"Notifier{name.title()}",
                "notifier",
                environment=environment,
                in_vpc=False,
                timeout=NOTIFIER_TIMEOUT,
            )
            if secret is not None:
                grant_secret_value(secret, notifier)
            self.notifiers[name] = notifier

    def function(
        self,
        name: str,
        handler: str,
        *,
        environment: Mapping[str, str],
        in_vpc: bool,
        calls_aws: bool = False,
        reserved: int | None = None,
        timeout: Duration = TIMEOUT,
    ) -> lambda_.Function:
        """A function running ``escalator.handlers.<handler>.handler``, with its own log
        group; in the VPC, as a database client, when ``in_vpc``; and then, when
        ``calls_aws``, allowed out to AWS's dual-stack API endpoints over IPv6."""
        if calls_aws and not in_vpc:
            raise ValueError(f"{name}: calls_aws is for functions in the VPC")
        variables = {Env.POWERTOOLS_SERVICE_NAME: SERVICE, **environment}
        placement: dict[str, Any] = {}
        if in_vpc:
            security_groups = [self._network.database_clients]
            if calls_aws:
                security_groups.append(self._network.aws_api_clients)
                # The SDK's clients then use the dual-stack endpoints (states.<region>.api.aws):
                # the IPv4-only ones are out of reach, with no IPv4 route out of the VPC.
                variables[Env.AWS_USE_DUALSTACK_ENDPOINT] = "true"
            placement = {
                "vpc": self._network.vpc,
                "vpc_subnets": self._network.subnets,
                "security_groups": security_groups,
                # Without it, Lambda lets no IPv6 traffic out, dual-stack subnets or not.
                "ipv6_allowed_for_dual_stack": True,
            }
        log_group = logs.LogGroup(
            self, f"{name}Logs", retention=self._retention, removal_policy=RemovalPolicy.DESTROY
        )
        function = lambda_.Function(
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
            environment=variables,
            **placement,
        )
        self.all_functions.append(function)
        return function
