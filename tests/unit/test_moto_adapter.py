"""The one module that adapts moto: a table of patches that fails loudly when moto changes
under it, applies while its context is open, nests, and leaves moto as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.emulation import moto_adapter

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-dev.txt"


def test_the_installed_moto_is_the_one_the_adapter_was_written_for() -> None:
    assert moto_adapter.check_moto() == []
    assert version("moto") == moto_adapter.MOTO_VERSION
    pinned = [line for line in REQUIREMENTS.read_text().splitlines() if line.startswith("moto[")]
    assert pinned == [f"moto[server,stepfunctions]=={moto_adapter.MOTO_VERSION}"]


def test_the_interpreter_loads_batch_s_enum_without_batch_s_backend() -> None:
    # GIVEN the emulation imported (moto_adapter: moto's Step Functions interpreter with it)
    # THEN what the interpreter takes from moto's Batch is there, and Batch's backend
    # (and EC2's, which it imports) was never imported
    from moto.batch.utils import JobStatus

    assert JobStatus.SUCCEEDED.value == "SUCCEEDED"
    assert not hasattr(sys.modules["moto.batch"], "batch_backends")
    assert "moto.batch.models" not in sys.modules
    # AND a request for Batch is refused by name, not served by a half-loaded package
    from moto import backends

    with pytest.raises(AttributeError, match="Batch backend is not loaded here"):
        backends.get_backend("batch")


def test_a_sandbox_process_starts_without_moto() -> None:
    # GIVEN a new process that imports the sandbox, as each rehearsed function's does
    script = (
        "import sys; import devstack.emulation.sandbox;"
        " print(sorted(name for name in sys.modules if name.split('.')[0] == 'moto'))"
    )

    # WHEN it has started
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )

    # THEN no moto module was loaded (a third of a second per sandbox), only the
    # placeholder that keeps Batch's backend out of any later import of moto
    assert run.stdout.split() == ["['moto.batch']"]


def test_a_changed_signature_is_reported_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    (row,) = [
        row for row in moto_adapter.PATCHES if row.name == "lambda_eval_utils.boto_client_for"
    ]
    originals = dict(moto_adapter._ORIGINALS)
    originals[(row.owner, row.attribute)] = lambda region, service: None  # as if moto dropped one
    monkeypatch.setattr(moto_adapter, "_ORIGINALS", originals)

    (problem,) = moto_adapter.check_moto()

    assert problem == (
        f"lambda_eval_utils.boto_client_for now takes ('region', 'service'), not {row.parameters}"
    )
    with (
        pytest.raises(RuntimeError, match="does not fit this moto"),
        moto_adapter.lambdas_in_process(),
    ):
        pass


def test_a_called_attribute_that_is_gone_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    row = moto_adapter.CALLED[0]
    originals = dict(moto_adapter._ORIGINALS)
    originals[(row.owner, row.attribute)] = None
    monkeypatch.setattr(moto_adapter, "_ORIGINALS", originals)

    assert moto_adapter.check_moto() == ["LambdaBackend.invoke is gone"]


def test_each_row_replaces_one_attribute_of_moto_once() -> None:
    rows = moto_adapter.PATCHES
    assert len({(row.owner, row.attribute) for row in rows}) == len(rows)
    assert len({row.name for row in rows}) == len(rows)
    assert all(row.why for row in rows)
    # (the module's docstring is the table's)
    assert all(
        f"``{row.name}`` ({row.kind}): {row.why}" in (moto_adapter.__doc__ or "") for row in rows
    )


def current() -> dict[str, Any]:
    """What each row's attribute of moto is now."""
    return {row.name: getattr(row.owner, row.attribute, None) for row in moto_adapter.PATCHES}


def test_patches_are_in_place_only_while_the_context_is_open() -> None:
    before = current()
    with moto_adapter.lambdas_in_process(omit={"json_path.parse"}):
        during = current()
    assert current() == before
    assert during["json_path.parse"] is before["json_path.parse"]
    del before["json_path.parse"], during["json_path.parse"]
    assert all(during[name] is not before[name] for name in before)


def test_an_unknown_row_cannot_be_left_out() -> None:
    with (
        pytest.raises(ValueError, match=r"no such patch: Queue\.messages"),
        moto_adapter.lambdas_in_process(omit={"Queue.messages"}),
    ):
        pass


def test_contexts_nest_each_with_its_handlers_and_the_outer_one_restores_moto(
    aws_credentials: None,
) -> None:
    # GIVEN a function in moto
    before = current()
    with mock_aws():
        lambda_client = boto3.client("lambda", region_name="eu-central-1")
        iam = boto3.client("iam", region_name="eu-central-1")
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lambda_client.create_function(
            FunctionName="f",
            Runtime="python3.12",
            Role=role,
            Handler="not.used",
            Code={"ZipFile": b"not used"},
        )

        def invoke() -> Any:
            return json.load(lambda_client.invoke(FunctionName="f")["Payload"])

        # WHEN a context opens inside another, each with its own handler
        with moto_adapter.lambdas_in_process() as outer:
            outer.overrides["f"] = lambda event, context: "outer"
            in_outer = current()
            with moto_adapter.lambdas_in_process() as inner:
                inner.overrides["f"] = lambda event, context: "inner"
                # THEN the inner one answers while it is open
                assert invoke() == "inner"
                # (a number moto reads, such as a polling delay, is the same value)
                assert all(
                    current()[name] is not in_outer[name]
                    for name in in_outer
                    if callable(in_outer[name])
                )
            # and the outer one once it has closed, as it was
            assert current() == in_outer
            assert invoke() == "outer"
            assert outer.invocations == ["f"]
            assert inner.invocations == ["f"]
    # and moto is itself again after the outer one
    assert current() == before


def test_queue_counts_are_exact_when_asked_for(aws_credentials: None) -> None:
    # GIVEN a FIFO queue holding three messages, one of them received (in flight)
    with mock_aws(), moto_adapter.lambdas_in_process():
        sqs = boto3.client("sqs", region_name="eu-central-1")
        url = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        for n in range(3):
            sqs.send_message(
                QueueUrl=url,
                MessageBody=str(n),
                MessageGroupId=str(n),
                MessageDeduplicationId=str(n),
            )
        assert len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]) == 1

        # WHEN a client asks for every attribute, and for one setting only
        every = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        one = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["FifoQueue"])["Attributes"]

    # THEN the counts are there and exact, and only what was asked for is answered
    assert every["ApproximateNumberOfMessages"] == "2"
    assert every["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert every["ApproximateNumberOfMessagesDelayed"] == "0"
    assert one == {"FifoQueue": "true"}
