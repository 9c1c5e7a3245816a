"""The state machine exactly as the CDK app synthesizes it, executed by moto.

``synthesized_template()`` synthesizes the stack (bundling skipped); ``deploy`` creates a
moto Lambda function per function of the template, resolves the definition's
references to them, and registers the state machine.
"""

from __future__ import annotations

import functools
import io
import json
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The repository this package was installed from (editable install): where app.py is.
REPOSITORY = Path(__file__).resolve().parents[3]

REGION = "eu-central-1"
ACCOUNT = "123456789012"


@functools.cache
def synthesized_template() -> dict[str, Any]:
    """The CloudFormation template of the CDK app (bundling skipped: code runs in-process)."""
    if str(REPOSITORY) not in sys.path:
        sys.path.insert(0, str(REPOSITORY))
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.stack import EscalatorStack

    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    return dict(Template.from_stack(EscalatorStack(app, "Escalator")).to_json())


def resources(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def resolve(value: Any, arns: dict[str, str]) -> Any:
    """Resolve the CloudFormation intrinsics a state machine definition uses."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(part, arns) for part in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", value
        return arns[logical_id]
    if isinstance(value, dict) and "Ref" in value:
        pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
        return pseudo[value["Ref"]]
    raise AssertionError(f"cannot resolve {value!r}")


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# the tests run the real handlers in-process\n")
    return buffer.getvalue()


@dataclass
class DeployedStateMachine:
    """The synthesized state machine registered in moto, and the functions behind it."""

    sfn: Any
    arn: str
    functions: dict[str, str]  # logical id -> function name

    def function_named(self, prefix: str) -> str:
        """The moto function name of the template function whose logical id starts so."""
        (name,) = [
            name for logical_id, name in self.functions.items() if logical_id.startswith(prefix)
        ]
        return name

    def start(self, execution_input: dict[str, Any] | None = None) -> str:
        # A name of our own, as EventBridge Scheduler gives one: moto leaves $$.Execution.Id
        # ending in ":None" without it, the same for every execution.
        response = self.sfn.start_execution(
            stateMachineArn=self.arn,
            name=f"tick-{uuid.uuid4()}",
            input=json.dumps(execution_input or {"period_seconds": 60}),
        )
        execution_arn: str = response["executionArn"]
        return execution_arn

    def wait(self, execution_arn: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            description: dict[str, Any] = self.sfn.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING":
                return description
            if time.monotonic() > deadline:
                raise AssertionError(f"execution still running after {timeout} s")
            time.sleep(0.1)

    def run(
        self, execution_input: dict[str, Any] | None = None, timeout: float = 120
    ) -> dict[str, Any]:
        """Start an execution and wait for it to end; fail unless it succeeded."""
        description = self.wait(self.start(execution_input), timeout)
        assert description["status"] == "SUCCEEDED", description
        return description

    def stop(self, execution_arn: str) -> None:
        """Stop an execution and wait until it has ended.

        moto reports a stopped execution as FAILED where AWS says ABORTED.
        """
        self.sfn.stop_execution(executionArn=execution_arn)
        assert self.wait(execution_arn)["status"] in ("ABORTED", "FAILED")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events += page["events"]
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]


def deploy(
    boto_session: Any,
    template: dict[str, Any],
    endpoint_url: str | None = None,
    lambdas: Any = None,
) -> DeployedStateMachine:
    """Register the template's functions and state machine in moto (``mock_aws`` or the
    moto server at ``endpoint_url``); give ``lambdas`` (``InProcessLambdas``) each
    function's reserved concurrency."""
    iam = boto_session.client("iam", endpoint_url=endpoint_url)
    role_arn = iam.create_role(
        RoleName="escalator-test",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    lambda_client = boto_session.client("lambda", endpoint_url=endpoint_url)
    code = _empty_zip()
    arns: dict[str, str] = {}
    functions: dict[str, str] = {}
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        created = lambda_client.create_function(
            FunctionName=logical_id,
            Runtime=function["Properties"]["Runtime"],
            Role=role_arn,
            Handler=function["Properties"]["Handler"],
            Code={"ZipFile": code},
        )
        arns[logical_id] = created["FunctionArn"]
        functions[logical_id] = logical_id
        reserved = function["Properties"].get("ReservedConcurrentExecutions")
        if lambdas is not None and reserved:
            lambdas.reserve(logical_id, int(reserved))
    ((_, state_machine),) = resources(template, "AWS::StepFunctions::StateMachine").items()
    definition = resolve(state_machine["Properties"]["DefinitionString"], arns)
    sfn = boto_session.client("stepfunctions", endpoint_url=endpoint_url)
    arn = sfn.create_state_machine(
        name="escalator-delivery", definition=definition, roleArn=role_arn, type="STANDARD"
    )["stateMachineArn"]
    return DeployedStateMachine(sfn=sfn, arn=arn, functions=functions)
