"""The Lambda functions: one code asset (the ``escalator`` package, its runtime
dependencies and ``sql/``), bundled locally, with no Docker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, Duration, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from escalator.channels import CHANNELS

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


class EscalatorFunctions(Construct):
    """The initiator, the database steps and one notifier per registered channel."""

    def __init__(self, scope: Construct, construct_id: str, *, environment: dict[str, str]):
        super().__init__(scope, construct_id)
        code = lambda_code()

        def function(name: str, handler: str, timeout: int = 30) -> lambda_.Function:
            return lambda_.Function(
                self,
                name,
                runtime=RUNTIME,
                architecture=lambda_.Architecture.X86_64,
                code=code,
                handler=handler,
                timeout=Duration.seconds(timeout),
                memory_size=256,
                environment={"POWERTOOLS_SERVICE_NAME": "escalator", **environment},
            )

        self.initiator = function("Initiator", "escalator.handlers.initiator.handler")
        self.activator = function("Activator", "escalator.handlers.activator.handler")
        self.confirm = function("Confirm", "escalator.handlers.confirm.handler")
        self.record = function("Record", "escalator.handlers.record.handler")
        self.notifiers = {
            name: function(f"Notifier{name.title()}", "escalator.handlers.notifier.handler")
            for name in CHANNELS
        }
