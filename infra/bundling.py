"""The Lambda code asset: the ``escalator`` package, its runtime dependencies and
``sql/``, bundled locally (no Docker). Nothing else of the repository goes in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = lambda_.Runtime.PYTHON_3_12
PACKAGE = ROOT / "lambdas" / "escalator"
# Modules of the package for producers and operators (the producer client, the
# executions reader): nothing a function runs imports them, so they are not deployed.
NOT_DEPLOYED = ("client.py", "executions.py")
# Everything at the repository root that is not the Lambda code: the asset's hash (what
# makes CDK bundle again) depends on the rest only.
_NOT_CODE = [
    ".venv",
    ".git",
    "node_modules",
    "cdk.out",
    "tests",
    "infra",
    "devstack",
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
    """pip installs the runtime's wheels for Lambda's platform, then copies the package
    and the migrations."""

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
        package = Path(output_dir) / "escalator"
        shutil.copytree(
            PACKAGE,
            package,
            ignore=shutil.ignore_patterns("__pycache__", *NOT_DEPLOYED),
            dirs_exist_ok=True,
        )
        shutil.copytree(ROOT / "sql", package / "sql", dirs_exist_ok=True)
        return True


def lambda_code() -> lambda_.Code:
    """The code asset shared by every function."""
    return lambda_.Code.from_asset(
        str(ROOT),
        exclude=_NOT_CODE,
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            local=LocalBundling(),
            command=["bash", "-c", "echo 'bundled locally only: see infra/bundling.py' && exit 1"],
        ),
    )
