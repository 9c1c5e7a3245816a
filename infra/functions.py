"""The Lambda functions: one code asset (the ``escalator`` package, its runtime
dependencies and ``sql/``), bundled locally, with no Docker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy, triggers
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from escalator.channels import CHANNELS
from infra.network import Network
from infra.settings import StackSettings

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = lambda_.Runtime.PYTHON_3_12
# Everything at the repository root that is not the Lambda code.
_NOT_CODE = [
    ".venv",
    ".git",
    "node_modules",
    "cdk.out",
    "tests",
    "infra",
    "bench",
    "docs",
    ".ci",
    "**/__pycache__",
    "*.egg-info",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
]


@jsii.implements(ILocalBundling)
class LocalBundling:
    """pip installs the runtime's wheels for Lambda's platform, then copies the code."""

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        subprocess.run(  # noqa: S603 - fixed argument list
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--quiet",  # errors only: no notes about this machine's package indexes
                "--disable-pip-version-check",
                "--requirement",
                str(ROOT / "lambdas" / "requirements.txt"),
                "--target",
                output_dir,
                "--platform",
                "manylinux2014_x86_64",
                "--implementation",
                "cp",
                "--python-version",
                RUNTIME.name.removeprefix("python"),
                "--only-binary=:all:",
                "--upgrade",
            ],
            check=True,
        )
        ignore = shutil.ignore_patterns("__pycache__", "local")
        shutil.copytree(
            ROOT / "lambdas" / "escalator",
            Path(output_dir) / "escalator",
            ignore=ignore,
            dirs_exist_ok=True,
        )
        shutil.copytree(ROOT / "sql", Path(output_dir) / "escalator" / "sql", dirs_exist_ok=True)
        return True


def lambda_code() -> lambda_.Code:
    """The code asset shared by every function."""
    return lambda_.Code.from_asset(
        str(ROOT),
        exclude=_NOT_CODE,
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            local=LocalBundling(),
            command=["bash", "-c", "echo 'bundled locally only: see infra/functions.py' && exit 1"],
        ),
    )


@dataclass(frozen=True)
class ProviderSecret:
    """A provider's credentials secret and the variable that names it to the notifier."""

    secret: secretsmanager.ISecret
    variable: str


class EscalatorFunctions(Construct):
    """The database functions (in the isolated subnets, with bounded concurrency) and one
    notifier per registered channel (outside the VPC, reading only its own secret)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        database_secret: secretsmanager.ISecret,
        provider_secrets: Mapping[str, ProviderSecret],
        settings: StackSettings,
    ):
        super().__init__(scope, construct_id)
        self.code = code = lambda_code()
        keep_logs = retention(settings.log_retention_days)
        budget = settings.budget

        def function(
            name: str,
            handler: str,
            *,
            environment: dict[str, str],
            in_vpc: bool,
            reserved: int | None = None,
            timeout: int = 30,
        ) -> lambda_.Function:
            placement: dict[str, Any] = {}
            if in_vpc:
                placement = {
                    "vpc": network.vpc,
                    "vpc_subnets": network.subnets,
                    "security_groups": [network.database_clients],
                }
            log_group = logs.LogGroup(
                self, f"{name}Logs", retention=keep_logs, removal_policy=RemovalPolicy.DESTROY
            )
            return lambda_.Function(
                self,
                name,
                runtime=RUNTIME,
                architecture=lambda_.Architecture.X86_64,
                code=code,
                handler=handler,
                timeout=Duration.seconds(timeout),
                memory_size=256,
                reserved_concurrent_executions=reserved,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
                environment={"POWERTOOLS_SERVICE_NAME": "escalator", **environment},
                **placement,
            )

        database = {
            "DB_SECRET_ARN": database_secret.secret_arn,
            "DB_SSLMODE": "require",
        }
        delivery = {
            **database,
            "LOOKAHEAD_SECONDS": str(settings.schedule_seconds),
        }
        self.initiator = function(
            "Initiator", "escalator.handlers.initiator.handler", environment=database, in_vpc=True
        )
        self.activator = function(
            "Activator",
            "escalator.handlers.activator.handler",
            environment=delivery,
            in_vpc=True,
            reserved=budget.activator,
        )
        self.confirm = function(
            "Confirm",
            "escalator.handlers.confirm.handler",
            environment=delivery,
            in_vpc=True,
            reserved=budget.confirm,
        )
        self.record = function(
            "Record",
            "escalator.handlers.record.handler",
            environment=delivery,
            in_vpc=True,
            reserved=budget.record,
        )
        self.database_functions = [self.initiator, self.activator, self.confirm, self.record]
        for database_function in self.database_functions:
            database_secret.grant_read(database_function)

        self.notifiers: dict[str, lambda_.Function] = {}
        for name in CHANNELS:
            provider = provider_secrets.get(name)
            environment = dict(settings.provider)
            if provider is not None:
                environment[provider.variable] = provider.secret.secret_arn
            notifier = function(
                f"Notifier{name.title()}",
                "escalator.handlers.notifier.handler",
                environment=environment,
                in_vpc=False,
            )
            if provider is not None:
                provider.secret.grant_read(notifier)
            self.notifiers[name] = notifier

    def add_migration(
        self,
        *,
        network: Network,
        database_secret: secretsmanager.ISecret,
        database: Construct,
        settings: StackSettings,
    ) -> triggers.TriggerFunction:
        """The function that applies ``sql/`` once the database exists, at every deploy
        that changes the code; a failing migration fails the deployment."""
        keep_logs = retention(settings.log_retention_days)
        migrate = triggers.TriggerFunction(
            self,
            "Migrate",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            code=self.code,
            handler="escalator.handlers.migrate.handler",
            timeout=Duration.minutes(5),
            memory_size=256,
            reserved_concurrent_executions=settings.budget.migrate,
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            security_groups=[network.database_clients],
            log_group=logs.LogGroup(
                self, "MigrateLogs", retention=keep_logs, removal_policy=RemovalPolicy.DESTROY
            ),
            environment={
                "POWERTOOLS_SERVICE_NAME": "escalator",
                "DB_SECRET_ARN": database_secret.secret_arn,
                "DB_SSLMODE": "require",
                **(
                    {"CALLER_ID_REGISTRY": settings.caller_id_registry}
                    if settings.caller_id_registry
                    else {}
                ),
            },
            execute_after=[database],
            execute_on_handler_change=True,
        )
        database_secret.grant_read(migrate)
        return migrate


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch retention that keeps logs at least ``days`` days."""
    return next((value for limit, value in _RETENTION.items() if limit >= days), _RETENTION[731])
