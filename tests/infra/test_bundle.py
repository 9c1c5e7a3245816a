"""The Lambda code bundled for real (local bundling, manylinux wheels, no Docker), and
every handler imported from the bundle by the Lambda's Python version."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# Long: started first, so that the parallel run ends with the short tests. infra.bundling
# is the CDK's: it runs in its JavaScript runtime, on the one worker that starts it.
pytestmark = [pytest.mark.long, pytest.mark.xdist_group("cdk")]


def lambda_python(version: str) -> str:
    """An interpreter of the Lambda's Python ``version`` ("3.12"; pyenv's, on this
    machine kind)."""
    candidates = [
        shutil.which(f"python{version}"),
        *sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python")),
    ]
    for candidate in candidates:
        if (
            candidate
            and subprocess.run([str(candidate), "--version"], capture_output=True).returncode == 0
        ):
            return str(candidate)
    pytest.fail(f"no Python {version} found to import the bundle with")


# (pip downloads the Lambda platform's wheels: without pip's cache, as on a fresh machine,
# that takes what the network takes; pip's own timeouts end a hang)
@pytest.mark.timeout(300)
def test_bundle_holds_code_dependencies_and_schema_and_every_handler_imports(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from infra.bundling import RDS_CA_BUNDLE_SHA256, RUNTIME, lambda_code

    # GIVEN the stack's functions, one code asset shared by them all (the session's
    # template: bundling skipped there, the asset is the same)
    functions = [
        resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        and resource["Properties"].get("Handler", "").startswith("escalator.")
    ]
    assert len({json.dumps(resource["Properties"]["Code"]) for resource in functions}) == 1
    (runtime,) = {resource["Properties"]["Runtime"] for resource in functions}
    assert runtime == RUNTIME.name
    version = runtime.removeprefix("python")  # "3.12"
    # AND that asset bundled for real, as the CDK bundles it for the stack (a function of
    # a stack of its own: the whole stack again would cost seconds and prove no more)
    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context={"aws:cdk:enable-asset-metadata": True})
    stack = cdk.Stack(app, "Bundle")
    lambda_.Function(
        stack,
        "Function",
        code=lambda_code(),
        handler=functions[0]["Properties"]["Handler"],
        runtime=RUNTIME,
    )
    bundled = app.synth().get_stack_by_name("Bundle").template["Resources"]
    (asset,) = {
        resource["Metadata"]["aws:asset:path"]
        for resource in bundled.values()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    bundle = tmp_path / "cdk.out" / asset

    # THEN it holds the package, the migrations and Lambda-platform wheels; not the
    # development harness (no local-stack module, nothing that names it), the CDK app
    # or the tests
    assert (bundle / "escalator" / "sql" / "0001_initial.sql").is_file()
    for outside in ("escalator_cli", "devstack", "infra", "tests", "bench"):
        assert not (bundle / outside).exists()
    code = {path: path.read_text(encoding="utf-8") for path in bundle.glob("escalator/**/*.py")}
    assert len(code) > 20
    assert [path for path, text in code.items() if "devstack" in text] == []
    assert not list(bundle.glob("escalator/**/local"))
    assert {path.stem for path in code} & {"stack", "outbox", "demo", "moto_adapter"} == set()
    # nor the producers' and operators' tools (nothing a function runs imports them)
    assert {path.name for path in code} & {"client.py", "executions.py", "verification.py"} == set()
    assert (bundle / "escalator" / "contract.py").is_file()
    # AND the RDS CA bundle, the recorded bytes, where every database function's
    # DB_SSLROOTCERT names it (Lambda unpacks the asset at /var/task)
    roots = {
        resource["Properties"]["Environment"]["Variables"].get("DB_SSLROOTCERT")
        for resource in functions
        if "VpcConfig" in resource["Properties"]
    }
    (root,) = roots
    assert root.startswith("/var/task/")
    shipped = (bundle / root.removeprefix("/var/task/")).read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == RDS_CA_BUNDLE_SHA256
    assert list(
        bundle.glob(f"psycopg2/_psycopg.cpython-{version.replace('.', '')}-x86_64-linux-gnu.so")
    )
    # AND no bytecode of this machine's Python (Lambda's ignores it: dead weight)
    assert list(bundle.glob("**/*.pyc")) == []
    # AND every handler imports there, with the Lambda's Python
    handlers = sorted({resource["Properties"]["Handler"] for resource in functions})
    script = "; ".join(
        [
            "import importlib, json, psycopg2, twilio.rest, phonenumbers",
            f"handlers = {json.dumps(handlers)}",
            "[getattr(importlib.import_module(h.rpartition('.')[0]), h.rpartition('.')[2]) "
            "for h in handlers]",
            "print(len(handlers))",
        ]
    )
    result = subprocess.run(
        # As Lambda runs it: the bundle is the working directory, first on the path.
        [lambda_python(version), "-E", "-s", "-c", script],
        cwd=bundle,
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(handlers))
    # initiator, activator, confirm, record, notifier, migrate, the migration launcher,
    # the status-callback receiver and its recorder, the purge
    assert len(handlers) == 10


class FakePip:
    """Records each pip command; the offline one (``--no-index``) answers ``offline``."""

    def __init__(self, offline: int) -> None:
        self.offline = offline
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(
        self, command: list[str], *, check: bool, **_: Any
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append((command, check))
        code = self.offline if "--no-index" in command else 0
        return subprocess.CompletedProcess(command, code)


def test_dependencies_come_from_the_prefetched_wheels_without_the_index(tmp_path: Path) -> None:
    from infra.bundling import install_dependencies

    pip = FakePip(offline=0)

    commands = install_dependencies(str(tmp_path / "out"), wheels=tmp_path, run=pip)

    assert len(commands) == 1
    assert commands[0][-3:] == ["--no-index", "--find-links", str(tmp_path)]
    assert pip.calls == [(commands[0], False)]


def test_wheels_that_lack_a_pin_fall_back_to_the_index(tmp_path: Path) -> None:
    from infra.bundling import install_dependencies

    pip = FakePip(offline=1)  # (pip: no matching distribution among the wheels)

    offline, index = install_dependencies(str(tmp_path / "out"), wheels=tmp_path, run=pip)

    assert "--no-index" in offline
    assert "--no-index" not in index
    assert "--find-links" not in index
    assert pip.calls[-1] == (index, True)  # (the index's failure is the bundling's)


def test_without_prefetched_wheels_the_index_is_asked(tmp_path: Path) -> None:
    from infra.bundling import install_dependencies

    pip = FakePip(offline=0)

    (index,) = install_dependencies(str(tmp_path / "out"), wheels=tmp_path / "none", run=pip)

    assert "--no-index" not in index
    assert pip.calls == [(index, True)]
