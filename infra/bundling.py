"""The Lambda code asset: the ``escalator`` package (with the RDS CA bundle, checked
against its recorded SHA-256), its runtime dependencies and ``sql/``, bundled locally
(no Docker). Nothing else of the repository goes in it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from escalator.config import RDS_CA_BUNDLE_FILE

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = lambda_.Runtime.PYTHON_3_12
PACKAGE = ROOT / "lambdas" / "escalator"
# Where Lambda unpacks the code asset (a .zip function's LAMBDA_TASK_ROOT).
TASK_ROOT = "/var/task"
# The SHA-256 of the RDS CA bundle shipped with the functions: AWS's global bundle
# (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem) as AWS published it
# in May 2024, taken from a pinned npm package (docs/database-tls.md says which, and how
# ``python -m devstack.build.rds_ca_bundle`` derives it again). Bundling refuses any other bytes.
RDS_CA_BUNDLE_SHA256 = "2c151768edd48e9ef6719de74fdcbdebe290d1e87bc02ce9014ea6eea557d2a0"
# Modules of the package for producers and operators (the producer client, the
# executions reader, escalator verify): nothing a function runs imports them, so they are
# not deployed.
NOT_DEPLOYED = ("client.py", "executions.py", "verification.py")
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
    "lambdas/escalator_cli",
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


class BundlingError(RuntimeError):
    """The code asset cannot be built as it must be; the message says why."""


def verified_rds_ca_bundle(package: Path | None = None) -> bytes:
    """The bytes of the RDS CA bundle in ``package`` (the ``escalator`` package that is
    bundled), if their SHA-256 is the recorded one; ``BundlingError`` otherwise."""
    path = (package or PACKAGE) / RDS_CA_BUNDLE_FILE
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != RDS_CA_BUNDLE_SHA256:
        raise BundlingError(
            f"{path} has SHA-256 {digest}, not the recorded {RDS_CA_BUNDLE_SHA256}: "
            "it is not the RDS CA bundle the functions are to trust (docs/database-tls.md)"
        )
    return data


def deployed_path(file_in_package: str) -> str:
    """Where a file of the ``escalator`` package is in a deployed function."""
    return f"{TASK_ROOT}/{PACKAGE.name}/{file_in_package}"


def _pip(command: str) -> list[str]:
    """pip ``command`` for the runtime's requirements, as wheels for Lambda's platform."""
    return [
        sys.executable,
        "-m",
        "pip",
        command,
        "--quiet",
        "--quiet",  # errors only: no notes about this machine's package indexes
        "--disable-pip-version-check",
        "--requirement",
        str(ROOT / "lambdas" / "requirements.txt"),
        "--platform",
        "manylinux2014_x86_64",
        "--implementation",
        "cp",
        "--python-version",
        RUNTIME.name.removeprefix("python"),
        "--only-binary=:all:",
    ]


# Where ``make install`` downloads the Lambda platform's wheels (``prefetch_wheels``), in
# the virtual environment that runs the CDK app and the tests.
PREFETCHED_WHEELS = Path(sys.prefix) / "lambda-wheels"


def prefetch_wheels(directory: Path) -> None:
    """Download the Lambda platform's wheels once (``make install``), so that pip's cache
    holds them when bundling runs (a test, a ``cdk synth``): bundling then takes what it
    takes to unpack them, not what the network takes."""
    subprocess.run([*_pip("download"), "--dest", str(directory)], check=True)  # noqa: S603


Run = Callable[..., "subprocess.CompletedProcess[Any]"]


def install_dependencies(
    output_dir: str, wheels: Path = PREFETCHED_WHEELS, run: Run = subprocess.run
) -> list[list[str]]:
    """pip installs the runtime's dependencies for Lambda's platform into ``output_dir``:
    from the prefetched ``wheels`` without the index (what the tests installed, in a
    third of the time), and from the index when they lack what the requirements pin now
    (or there are none). Returns the commands run."""
    install = [*_pip("install"), "--target", output_dir, "--upgrade", "--no-compile"]
    commands = []
    if wheels.is_dir():
        offline = [*install, "--no-index", "--find-links", str(wheels)]
        commands.append(offline)
        if run(offline, check=False, capture_output=True).returncode == 0:
            return commands
    commands.append(install)
    run(install, check=True)
    return commands


@jsii.implements(ILocalBundling)
class LocalBundling:
    """pip installs the runtime's wheels for Lambda's platform, then copies the package
    (once its RDS CA bundle is the recorded one) and the migrations."""

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        verified_rds_ca_bundle()
        # (no bytecode: pip would compile it for this machine's Python, which Lambda's
        # ignores; a third of the bundle, and of the time it takes to make it)
        install_dependencies(output_dir)
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


if __name__ == "__main__":
    prefetch_wheels(Path(sys.argv[1]))
