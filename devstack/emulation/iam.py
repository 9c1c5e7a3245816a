"""IAM in the emulation, as AWS enforces it, from the synthesized template.

AWS checks every call against the caller's role; moto checks nothing by default. While a
``Permissions`` is enforced (``lambdas_in_process`` makes one), this module has:

- **Roles from the template**: each ``AWS::IAM::Role`` with its policies as synthesized
  (its ``AWS::IAM::Policy`` resources, its inline ``Policies``, its managed policy ARNs,
  AWS's managed ones put inline under their names), intrinsics resolved, created in
  moto's IAM (``Permissions.install``). Each consumer of a role gets STS credentials of
  its own for it (a function: a session named after it, as Lambda assumes its execution
  role).
- **moto's IAM authorization on** (``moto.core.authorization.enable_iam_authentication``),
  with each request authorized as AWS authorizes it (``authorize``): its IAM action
  (``lambda:InvokeFunction`` for ``Invoke``, ``sqs:DeleteMessage`` for a batch...) on its
  resource (the function's, state machine's, execution's, secret's, queue's ARN; moto
  checks every service but SQS against ``*``), refused with the service's own error
  (``AccessDeniedException``...). The harness's own credentials (the environment's, the
  deploying session's, moto's Step Functions interpreter's) are admitted as the
  account's administrator (``Permissions.admit``).
- **Credentials per invocation** (``invocation_roles``, ``acting_as``): boto3's default
  session signs each request with the credentials of the invocation running in the
  calling thread (the sandbox thread sets them), so in-process handlers that share
  ``os.environ`` and cache their clients per cold start still call AWS as their own
  roles; the product code is unchanged.
- **The integration table** (``INTEGRATIONS``): what each Step Functions service
  integration needs of its state machine's role, each row citing AWS's page; a task is
  checked against it before it runs (``Permissions.task_refusal``), and a denied one
  fails with the error and cause AWS gives it, so Retry and Catch run as on AWS.
- The schedule's role, the event source mapping's role (``event_source_refusal``), the
  function URL's resource policy (``function_url_refusal``) and ``rds-db:connect``
  (``Permissions.connect_refusal``) are evaluated the same way, with moto's policy
  evaluator (``IAMPolicy``), cached per role, action and resource.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import unquote

import boto3
import botocore.session
from botocore.credentials import (
    CredentialProvider,
    Credentials,
    EnvProvider,
    ReadOnlyCredentials,
)
from moto.awslambda.exceptions import LambdaClientError
from moto.core.authorization import enable_iam_authentication
from moto.core.exceptions import JsonRESTError
from moto.iam.access_control import IAMPolicy, IAMRequest, PermissionResult
from moto.iam.models import AccessKey, iam_backends
from moto.sts.models import sts_backends

from devstack.emulation.sessions import shared_models
from devstack.emulation.template import ACCOUNT, REGION, resolve, resources

# The name of the emulation's administrator (a user for keys without a session token, a
# role for those with one): what the harness deploys and reads results with.
ADMINISTRATOR = "escalator-emulation-administrator"
ADMINISTRATOR_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# moto's Step Functions interpreter signs its own calls with this key
# (moto.stepfunctions.parser.asl.utils.boto_client): the Step Functions service, which
# here acts only once ``INTEGRATIONS`` has checked the state machine's role.
INTERPRETER_CREDENTIALS = ReadOnlyCredentials("ak", "sk", None)
# The role of a function or state machine whose template names none (a test's
# hand-made template): allowed everything.
STAND_IN_ROLE = "escalator-test"
STAND_IN_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{STAND_IN_ROLE}"
_PARTITION = "aws"
_EMPTY_TRUST = {"Version": "2012-10-17", "Statement": []}


class Decision(Enum):
    """What a role's policies say of an action on a resource."""

    ALLOWED = "allowed"
    IMPLICIT_DENY = "because no identity-based policy allows the {action} action"
    EXPLICIT_DENY = "with an explicit deny in an identity-based policy"


def denial(principal: str, action: str, resource: str, decision: Decision) -> str:
    """AWS's message for a denied call."""
    why = decision.value.format(action=action)
    return f"User: {principal} is not authorized to perform: {action} on resource: {resource} {why}"


# ---- the integration table -------------------------------------------------------------


Needs = Callable[[Mapping[str, Any], str, str], list[tuple[str, str]]]


@dataclass(frozen=True)
class Integration:
    """A Step Functions service integration: what it needs of the state machine's role
    (``needs(parameters, region, account)``: (action, resource) pairs), the error a
    denied task fails with (``error``, and its cause's tail: ``cause``, formatted with
    the status and a request id), and the AWS page that says so (``source``)."""

    resource: str
    needs: Needs
    error: str
    cause: str
    status: int
    source: str


def _function_arn(parameters: Mapping[str, Any], region: str, account: str) -> str:
    """The ARN Lambda authorizes an invocation of ``FunctionName`` (and ``Qualifier``)
    against: a name, a partial ARN or an ARN, with its version or alias if given."""
    name = str(parameters.get("FunctionName", ""))
    qualifier = parameters.get("Qualifier")
    if name.startswith("arn:"):
        arn = name
    else:
        parts = name.split(":")
        if len(parts) >= 3 and parts[1] == "function":  # ACCOUNT:function:NAME[:QUALIFIER]
            account, parts = parts[0], parts[2:]
        arn = f"arn:{_PARTITION}:lambda:{region}:{account}:function:" + ":".join(parts)
    if qualifier and arn.count(":") == 6:
        arn += f":{qualifier}"
    return arn


def _machine(parameters: Mapping[str, Any]) -> str:
    return str(parameters.get("StateMachineArn", ""))


def _invoke(parameters: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    return [("lambda:InvokeFunction", _function_arn(parameters, region, account))]


def _start(parameters: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    return [("states:StartExecution", _machine(parameters))]


def _start_and_follow(
    parameters: Mapping[str, Any], region: str, account: str
) -> list[tuple[str, str]]:
    machine = _machine(parameters)
    # arn:aws:states:REGION:ACCOUNT:stateMachine:NAME -> ...:execution:NAME:<execution>
    prefix, _, name = machine.rpartition(":stateMachine:")
    execution = f"{prefix}:execution:{name}:{parameters.get('Name') or uuid.uuid4()}"
    rule = f"arn:{_PARTITION}:events:{region}:{account}:rule/" + _MANAGED_RULE
    return [
        ("states:StartExecution", machine),
        ("states:DescribeExecution", execution),
        ("states:StopExecution", execution),
        ("events:PutTargets", rule),
        ("events:PutRule", rule),
        ("events:DescribeRule", rule),
    ]


def _start_sync(parameters: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    return [("states:StartSyncExecution", _machine(parameters))]


# The EventBridge rule through which Step Functions learns that a child has ended.
_MANAGED_RULE = "StepFunctionsGetEventsForStepFunctionsExecutionRule"
# The optimized integrations answer as AWS's Java SDK (v1) names a service error it has
# no class for; the AWS SDK integrations as the SDK v2 does (``<Service>.<Service>Exception``).
_SDK_V1_CAUSE = "(Service: {service}; Status Code: {status}; Error Code: {code}; Request ID: {request}; Proxy: null)"  # noqa: E501
_SDK_V2_CAUSE = "(Service: {service}, Status Code: {status}, Request ID: {request})"
_STEP_FUNCTIONS_IAM = "https://docs.aws.amazon.com/step-functions/latest/dg/stepfunctions-iam.html"

# A Task whose Resource is a function's ARN (what the delivery machines' tasks are).
LAMBDA_FUNCTION = "arn:aws:lambda:REGION:ACCOUNT:function:NAME"

INTEGRATIONS: tuple[Integration, ...] = (
    Integration(
        LAMBDA_FUNCTION,
        _invoke,
        "Lambda.AWSLambdaException",
        _SDK_V1_CAUSE.replace("{service}", "AWSLambda"),
        403,
        "https://docs.aws.amazon.com/step-functions/latest/dg/lambda-iam.html"
        " (lambda:InvokeFunction on each function the state machine calls); the error as AWS"
        " reports it for a Task whose Resource is the function's ARN:"
        " awslabs/aws-deployment-framework#460 (src/account_processing.yml),"
        " aws-samples/lambda-refarch-imagerecognition#19",
    ),
    Integration(
        "arn:aws:states:::lambda:invoke",
        _invoke,
        "Lambda.AWSLambdaException",
        _SDK_V1_CAUSE.replace("{service}", "AWSLambda"),
        403,
        "https://docs.aws.amazon.com/step-functions/latest/dg/lambda-iam.html"
        " (lambda:InvokeFunction on each function); the error as AWS reports it:"
        " awslabs/aws-deployment-framework#460, aws-samples/lambda-refarch-imagerecognition#19",
    ),
    Integration(
        "arn:aws:states:::states:startExecution",
        _start,
        "StepFunctions.AWSStepFunctionsException",
        _SDK_V1_CAUSE.replace("{service}", "AWSStepFunctions"),
        400,
        f"{_STEP_FUNCTIONS_IAM} (Asynchronous: states:StartExecution on the state machine)",
    ),
    Integration(
        "arn:aws:states:::states:startExecution.sync",
        _start_and_follow,
        "StepFunctions.AWSStepFunctionsException",
        _SDK_V1_CAUSE.replace("{service}", "AWSStepFunctions"),
        400,
        f"{_STEP_FUNCTIONS_IAM} (Synchronous: StartExecution on the state machine,"
        " DescribeExecution and StopExecution on its executions, events:PutTargets, PutRule"
        f" and DescribeRule on the managed rule {_MANAGED_RULE}); a Standard child only:"
        " https://docs.aws.amazon.com/step-functions/latest/dg/concepts-cross-acct-sync-pattern.html"
        " (\"For nested Express Workflows, arn:aws:states:::states:startExecution.sync isn't"
        ' currently supported")',
    ),
    Integration(
        "arn:aws:states:::states:startExecution.sync:2",
        _start_and_follow,
        "StepFunctions.AWSStepFunctionsException",
        _SDK_V1_CAUSE.replace("{service}", "AWSStepFunctions"),
        400,
        f"{_STEP_FUNCTIONS_IAM} (Synchronous, as for .sync)",
    ),
    Integration(
        "arn:aws:states:::aws-sdk:sfn:startSyncExecution",
        _start_sync,
        "Sfn.SfnException",
        _SDK_V2_CAUSE.replace("{service}", "Sfn"),
        400,
        "https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html"
        " (an AWS SDK integration calls the API action: states:StartSyncExecution on the"
        " Express state machine; its errors are ServiceName.ErrorName) and"
        " https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartSyncExecution.html",
    ),
)
_BY_RESOURCE = {integration.resource: integration for integration in INTEGRATIONS}


@dataclass(frozen=True)
class TaskDenied:
    """Why a task may not run: the error and cause its state fails with."""

    error: str
    cause: str


# ---- roles from the template -------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """A role of the template as created in moto: its policies resolved."""

    logical_id: str
    arn: str
    trust: Mapping[str, Any]
    policies: tuple[tuple[str, Mapping[str, Any]], ...]  # (name, document)

    @property
    def name(self) -> str:
        return self.arn.rpartition("/")[2]


def template_references(template: Mapping[str, Any]) -> dict[str, str]:
    """What each resource of the template stands for where the emulation does not say
    otherwise (``resolve``'s references): functions by their logical ids (as ``deploy``
    creates them), state machines by their names, roles by their logical ids, and stand-ins
    of AWS's forms for the rest."""
    references: dict[str, str] = {}
    region, account = REGION, ACCOUNT
    for logical_id, resource in template.get("Resources", {}).items():
        kind, properties = resource["Type"], resource.get("Properties", {})
        arn = f"arn:{_PARTITION}:cloudformation:{region}:{account}:stand-in/{logical_id}"
        ref = logical_id
        if kind == "AWS::Lambda::Function":
            arn = f"arn:{_PARTITION}:lambda:{region}:{account}:function:{logical_id}"
        elif kind == "AWS::StepFunctions::StateMachine":
            name = properties.get("StateMachineName", logical_id)
            arn = ref = f"arn:{_PARTITION}:states:{region}:{account}:stateMachine:{name}"
        elif kind == "AWS::IAM::Role":
            arn = f"arn:{_PARTITION}:iam::{account}:role/{logical_id}"
        elif kind == "AWS::SQS::Queue":
            name = logical_id + (".fifo" if properties.get("FifoQueue") else "")
            arn = f"arn:{_PARTITION}:sqs:{region}:{account}:{name}"
            ref = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
        elif kind == "AWS::SecretsManager::Secret":
            arn = ref = f"arn:{_PARTITION}:secretsmanager:{region}:{account}:secret:{logical_id}"
        elif kind == "AWS::RDS::DBInstance":
            ref = logical_id.lower()
            arn = f"arn:{_PARTITION}:rds:{region}:{account}:db:{ref}"
            digest = hashlib.sha256(logical_id.encode()).hexdigest().upper()
            references[f"{logical_id}.DbiResourceId"] = "db-" + digest[:26]
        elif kind == "AWS::Logs::LogGroup":
            ref = str(properties.get("LogGroupName", logical_id))
            arn = f"arn:{_PARTITION}:logs:{region}:{account}:log-group:{ref}:*"
        references[logical_id] = ref
        references[f"{logical_id}.Arn"] = arn
    for logical_id, attachment in resources(
        template, "AWS::SecretsManager::SecretTargetAttachment"
    ).items():
        secret = attachment["Properties"]["SecretId"]
        if isinstance(secret, dict) and "Ref" in secret:
            references[logical_id] = references[secret["Ref"]]
    return references


@functools.cache
def _aws_managed_policies() -> dict[str, Any]:
    """AWS's managed policies, by name (moto's copy of them; parsed once)."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    parsed: dict[str, Any] = json.loads(aws_managed_policies_data)
    return parsed


def _managed_policy(arn: str, template: Mapping[str, Any], references: Mapping[str, str]) -> Any:
    name = arn.rpartition("/")[2]
    if arn.startswith(f"arn:{_PARTITION}:iam::aws:policy/"):
        return _aws_managed_policies()[name]["Document"]
    for logical_id, policy in resources(template, "AWS::IAM::ManagedPolicy").items():
        if references.get(logical_id) == arn:
            return resolve(policy["Properties"]["PolicyDocument"], references)
    raise KeyError(f"the managed policy {arn} is neither AWS's nor the template's")


def template_roles(template: Mapping[str, Any], references: Mapping[str, str]) -> dict[str, Role]:
    """The template's roles, by logical id, their policies resolved with ``references``."""
    roles: dict[str, list[tuple[str, Any]]] = {}
    role_resources = resources(template, "AWS::IAM::Role")
    for logical_id, role in role_resources.items():
        properties = role["Properties"]
        documents = roles.setdefault(logical_id, [])
        for inline in properties.get("Policies", []):
            documents.append((inline["PolicyName"], resolve(inline["PolicyDocument"], references)))
        for arn in resolve(properties.get("ManagedPolicyArns", []), references):
            documents.append((arn.rpartition("/")[2], _managed_policy(arn, template, references)))
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, policy in resources(template, kind).items():
            properties = policy["Properties"]
            document = resolve(properties["PolicyDocument"], references)
            name = properties.get("PolicyName") or properties.get("ManagedPolicyName") or logical_id
            for role in properties.get("Roles", []):
                role_id = role["Ref"] if isinstance(role, dict) else role
                if role_id in roles:
                    roles[role_id].append((name, document))
    return {
        logical_id: Role(
            logical_id=logical_id,
            arn=references.get(f"{logical_id}.Arn", f"arn:aws:iam::{ACCOUNT}:role/{logical_id}"),
            trust=resolve(role_resources[logical_id]["Properties"]["AssumeRolePolicyDocument"],
                          references),
            policies=tuple(documents),
        )
        for logical_id, documents in roles.items()
    }  # fmt: skip


def _role_property(value: Any) -> str | None:
    """The logical id of the role a ``Role``/``RoleArn`` property names (``Fn::GetAtt``)."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


# ---- credentials of the invocation running in a thread -------------------------------------


_ACTING_AS: contextvars.ContextVar[ReadOnlyCredentials | None] = contextvars.ContextVar(
    "escalator_invocation_credentials", default=None
)


@contextmanager
def acting_as(credentials: ReadOnlyCredentials | None) -> Iterator[None]:
    """While open, boto3's default session (``invocation_roles``) signs this thread's
    requests with ``credentials`` (a role's); ``None`` leaves them as they were."""
    if credentials is None:
        yield
        return
    token = _ACTING_AS.set(credentials)
    try:
        yield
    finally:
        _ACTING_AS.reset(token)


class _InvocationCredentials(Credentials):  # type: ignore[misc]
    """Credentials read at each request: the calling thread's invocation's, else the
    environment's (the harness's), else what the rest of the chain found once."""

    method = "escalator-invocation-role"

    def __init__(self) -> None:
        self._chain: ReadOnlyCredentials | None = None

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        current = _ACTING_AS.get()
        if current is not None:
            return current
        environment = EnvProvider().load()
        if environment is not None:
            frozen: ReadOnlyCredentials = environment.get_frozen_credentials()
            return frozen
        if self._chain is None:
            found = botocore.session.get_session().get_credentials()
            self._chain = (
                found.get_frozen_credentials() if found else ReadOnlyCredentials("", "", None)
            )
        return self._chain

    @property
    def access_key(self) -> str:
        return str(self.get_frozen_credentials().access_key)

    @property
    def secret_key(self) -> str:
        return str(self.get_frozen_credentials().secret_key)

    @property
    def token(self) -> str | None:
        token: str | None = self.get_frozen_credentials().token
        return token


class _InvocationRoleProvider(CredentialProvider):  # type: ignore[misc]
    METHOD = _InvocationCredentials.method
    CANONICAL_NAME = "EscalatorInvocationRole"

    def load(self) -> _InvocationCredentials:
        return _InvocationCredentials()


@functools.cache
def _invocation_session() -> Any:
    """One boto3 session for the process whose credentials are the invocation's (made
    once: a session loads each service's model anew)."""
    core = shared_models(botocore.session.get_session())
    core.get_component("credential_provider").insert_before("env", _InvocationRoleProvider())
    return boto3.Session(botocore_session=core)


@contextmanager
def invocation_roles() -> Iterator[None]:
    """While open, boto3's default session (what ``boto3.client(...)`` uses, as the
    product code does) signs each request with the credentials of the invocation running
    in the calling thread (``acting_as``), refreshed per request, else with the
    environment's as before; the previous default session comes back afterwards."""
    previous = boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = _invocation_session()
    try:
        yield
    finally:
        boto3.DEFAULT_SESSION = previous


# ---- the emulation's IAM ---------------------------------------------------------------------


class Permissions:
    """The emulation's IAM (module docstring). ``enforce``: whether anything is checked;
    without it the emulation is moto's own, which allows every call and task."""

    def __init__(self, *, enforce: bool = True) -> None:
        self.enforce = enforce
        self.template: Mapping[str, Any] = {}
        self.references: dict[str, str] = {}
        self.roles: dict[str, Role] = {}  # by logical id
        # Each issued access key id -> its secret, and -> its principal (assumed-role ARN)
        # and role ARN; the database's endpoint checks IAM tokens against them.
        self.secrets: dict[str, str] = {}
        self.session_tokens: dict[str, str] = {}
        self._principals: dict[str, tuple[str, str]] = {}
        self._sessions: dict[tuple[str, str], ReadOnlyCredentials] = {}
        self._policies: dict[str, tuple[Any, ...]] = {}
        self._decisions: dict[tuple[str, str, str], Decision] = {}
        self._url_refusals: dict[str, str | None] = {}
        self._lock = threading.RLock()

    # -- identities

    @contextmanager
    def enforced(self) -> Iterator[Permissions]:
        """moto's IAM authorization on, the harness (the environment's credentials) and
        moto's interpreter admitted, in-process invocations signing as their roles."""
        if not self.enforce:
            yield self
            return
        with enable_iam_authentication(), invocation_roles():
            self.admit(INTERPRETER_CREDENTIALS)
            environment = EnvProvider().load()  # the harness's (under mock_aws: moto's)
            if environment is not None:
                self.admit(environment.get_frozen_credentials())
            yield self

    def admit_session(self, session: Any) -> None:
        """Admit the credentials ``session`` (a boto3 session) signs with, if any."""
        found = session.get_credentials()
        if found is not None:
            self.admit(found.get_frozen_credentials())

    def admit(self, credentials: ReadOnlyCredentials, account: str = ACCOUNT) -> None:
        """Make ``credentials`` the account's administrator's in moto's IAM (moto tells a
        user's key from a role session's by the session token)."""
        if not self.enforce or not credentials.access_key:
            return
        with self._lock:
            iam = iam_backends[account][_PARTITION]
            if credentials.token is None or credentials.access_key.startswith("AKIA"):
                if ADMINISTRATOR not in iam.users:
                    iam.create_user(REGION, ADMINISTRATOR)
                    iam.put_user_policy(
                        ADMINISTRATOR, "administrator", json.dumps(ADMINISTRATOR_POLICY)
                    )
                user = iam.get_user(ADMINISTRATOR)
                if any(key.access_key_id == credentials.access_key for key in user.access_keys):
                    return
                key = AccessKey(ADMINISTRATOR, prefix="AKIA", account_id=account)
                key.access_key_id = credentials.access_key
                key.secret_access_key = credentials.secret_key
                user.access_keys.append(key)
                iam.access_keys[key.access_key_id] = key
                return
            arn = self._create_role(
                account, ADMINISTRATOR, _EMPTY_TRUST, [("administrator", ADMINISTRATOR_POLICY)]
            )
            sts = sts_backends[account][_PARTITION]
            if any(role.access_key_id == credentials.access_key for role in sts.assumed_roles):
                return
            assumed = sts.assume_role(REGION, "harness", arn, None, 43200, None)
            assumed.access_key_id = credentials.access_key
            assumed.secret_access_key = credentials.secret_key
            assumed.session_token = credentials.token

    def _create_role(
        self,
        account: str,
        name: str,
        trust: Mapping[str, Any],
        policies: Sequence[tuple[str, Mapping[str, Any]]],
    ) -> str:
        iam = iam_backends[account][_PARTITION]
        if any(role.name == name for role in iam.get_roles()):
            return str(iam.get_role(name).arn)
        role = iam.create_role(name, json.dumps(trust), "/", None, "", [], None)
        for policy_name, document in policies:
            iam.put_role_policy(name, policy_name, json.dumps(document))
        return str(role.arn)

    def install(
        self, template: Mapping[str, Any], references: Mapping[str, str] | None = None
    ) -> None:
        """Create the template's roles in moto's IAM (and the stand-in role), their
        intrinsics resolved with ``references`` over ``template_references``. Once per
        permissions; a second call does nothing."""
        with self._lock:
            if self.template:
                return
            self.template = template
            self.references = {**template_references(template), **(references or {})}
            self.roles = template_roles(template, self.references)
            for role in self.roles.values():
                self._create_role(ACCOUNT, role.name, role.trust, role.policies)
            self._create_role(
                ACCOUNT, STAND_IN_ROLE, _EMPTY_TRUST, [("everything", ADMINISTRATOR_POLICY)]
            )

    def update(
        self, template: Mapping[str, Any], references: Mapping[str, str] | None = None
    ) -> None:
        """A deploy of ``template`` over the one installed, as CloudFormation updates IAM:
        a role of both keeps its ARN (and the credentials issued for it) and gets the new
        template's policies in place of its old ones; a new role is created; one the new
        template no longer has is left (CloudFormation deletes it last, once nothing
        uses it). Every decision is made again from the new policies."""
        with self._lock:
            iam = iam_backends[ACCOUNT][_PARTITION]
            self.template = template
            self.references = {**template_references(template), **(references or {})}
            roles = template_roles(template, self.references)
            for role in roles.values():
                if any(existing.name == role.name for existing in iam.get_roles()):
                    for name in list(iam.list_role_policies(role.name)):
                        iam.delete_role_policy(role.name, name)
                    for name, document in role.policies:
                        iam.put_role_policy(role.name, name, json.dumps(document))
                else:
                    self._create_role(ACCOUNT, role.name, role.trust, role.policies)
            self.roles = {**self.roles, **roles}
            self._policies.clear()
            self._decisions.clear()
            self._url_refusals.clear()

    # -- who acts as which role

    def role_arn(self, role_property: Any) -> str:
        """The ARN of the role a ``Role``/``RoleArn`` property names; the stand-in role's
        when it names none of the template's."""
        logical_id = _role_property(role_property)
        if logical_id is not None and logical_id in self.roles:
            return self.roles[logical_id].arn
        return STAND_IN_ROLE_ARN

    def function_role_arn(self, function_logical_id: str) -> str:
        function = self.template.get("Resources", {}).get(function_logical_id, {})
        return self.role_arn(function.get("Properties", {}).get("Role"))

    def credentials(self, role_arn: str, session_name: str) -> ReadOnlyCredentials:
        """STS credentials of ``role_arn`` for a session of this name (issued once)."""
        with self._lock:
            key = (role_arn, session_name)
            if key not in self._sessions:
                assumed = sts_backends[ACCOUNT][_PARTITION].assume_role(
                    REGION, session_name, role_arn, None, 43200, None
                )
                credentials = ReadOnlyCredentials(
                    assumed.access_key_id, assumed.secret_access_key, assumed.session_token
                )
                self._sessions[key] = credentials
                self.secrets[credentials.access_key] = credentials.secret_key
                self.session_tokens[credentials.access_key] = str(credentials.token)
                self._principals[credentials.access_key] = (str(assumed.arn), role_arn)
            return self._sessions[key]

    def function_credentials(self, function_logical_id: str) -> ReadOnlyCredentials:
        """What Lambda gives the function: a session of its execution role named after it."""
        return self.credentials(self.function_role_arn(function_logical_id), function_logical_id)

    @staticmethod
    def signing(credentials: ReadOnlyCredentials) -> dict[str, Any]:
        """What makes a client sign with ``credentials``: ``session.client(service,
        **signing(...))`` (a client of a session that has loaded the service's model
        already: a new session loads it again, a tenth of a second)."""
        return {
            "aws_access_key_id": credentials.access_key,
            "aws_secret_access_key": credentials.secret_key,
            "aws_session_token": credentials.token,
        }

    def principal_of(self, access_key: str) -> tuple[str, str] | None:
        """(assumed-role ARN, role ARN) of an access key issued here."""
        return self._principals.get(access_key)

    # -- decisions

    def decide(self, role_arn: str, action: str, resource: str) -> Decision:
        """What the role's policies (as in moto's IAM) say of ``action`` on ``resource``."""
        key = (role_arn, action, resource)
        decision = self._decisions.get(key)
        if decision is not None:
            return decision
        results = [
            policy.is_action_permitted(action, resource) for policy in self._policies_of(role_arn)
        ]
        if PermissionResult.DENIED in results:
            decision = Decision.EXPLICIT_DENY
        elif PermissionResult.PERMITTED in results:
            decision = Decision.ALLOWED
        else:
            decision = Decision.IMPLICIT_DENY
        self._decisions[key] = decision
        return decision

    def _policies_of(self, role_arn: str) -> tuple[Any, ...]:
        with self._lock:
            if role_arn not in self._policies:
                iam = iam_backends[role_arn.split(":")[4] or ACCOUNT][_PARTITION]
                role = iam.get_role_by_arn(role_arn)
                documents = [
                    iam.get_role_policy(role.name, name)[1]
                    for name in iam.list_role_policies(role.name)
                ]
                attached, _ = iam.list_attached_role_policies(role.name)
                self._policies[role_arn] = tuple(
                    IAMPolicy(document) for document in [*documents, *attached]
                )
            return self._policies[role_arn]

    def refusal(self, role_arn: str, principal: str, action: str, resource: str) -> str | None:
        """AWS's message when ``role_arn`` may not do ``action`` on ``resource``."""
        if not self.enforce:
            return None
        decision = self.decide(role_arn, action, resource)
        return (
            None if decision is Decision.ALLOWED else denial(principal, action, resource, decision)
        )

    def task_refusal(
        self,
        role_arn: str,
        execution_arn: str,
        resource: str,
        parameters: Mapping[str, Any],
        region: str,
        account: str,
    ) -> TaskDenied | None:
        """Whether a task of ``resource`` (its ``Resource`` field) with these evaluated
        parameters may run under its state machine's role; how it fails if not."""
        if not self.enforce:
            return None
        # (a Resource may name the region and account: arn:aws:states:REGION:ACCOUNT:...)
        parts = resource.split(":")
        integration: Integration | None
        if resource.startswith("arn:aws:lambda:"):
            integration = _BY_RESOURCE[LAMBDA_FUNCTION]
            parameters = {"FunctionName": resource}
        else:
            integration = _BY_RESOURCE.get(":".join([*parts[:3], "", "", *parts[5:]]))
        if integration is None:
            return TaskDenied(
                "States.Runtime",
                f"devstack.emulation.iam.INTEGRATIONS does not say what {resource} needs of"
                " the state machine's role: add its row, from AWS's page on that integration",
            )
        # Step Functions assumes the role for the execution (a session of its own).
        session = hashlib.sha256(execution_arn.encode()).hexdigest()[:32]
        principal = f"arn:aws:sts::{account}:assumed-role/{role_arn.rpartition('/')[2]}/{session}"
        for action, target in integration.needs(parameters, region, account):
            message = self.refusal(role_arn, principal, action, target)
            if message is not None:
                tail = integration.cause.format(
                    status=integration.status, code="AccessDeniedException", request=uuid.uuid4()
                )
                return TaskDenied(integration.error, f"{message} {tail}")
        return None

    def event_source_refusal(self, function_logical_id: str, queue_arn: str) -> str | None:
        """Why Lambda would refuse to create an SQS event source mapping for the function
        (its execution role polls the queue), as CreateEventSourceMapping says it."""
        role_arn = self.function_role_arn(function_logical_id)
        principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.rpartition('/')[2]}/{function_logical_id}"  # noqa: E501
        for action in EVENT_SOURCE_ACTIONS:
            if self.refusal(role_arn, principal, action, queue_arn) is not None:
                name = action.partition(":")[2]
                return (
                    f"InvalidParameterValueException: The provided execution role does not have"
                    f" permissions to call {name} on SQS"
                )
        return None

    def connect_refusal(self, access_key: str, user: str) -> str | None:
        """Why an IAM token signed with ``access_key`` does not sign ``user`` in: its role
        may not ``rds-db:connect`` as that user on the template's instance."""
        if not self.enforce:
            return None
        found = self.principal_of(access_key)
        if found is None:
            return f"unknown access key id {access_key!r}"
        principal, role_arn = found
        ((instance_id, _),) = resources(self.template, "AWS::RDS::DBInstance").items()
        resource_id = self.references[f"{instance_id}.DbiResourceId"]
        resource = f"arn:{_PARTITION}:rds-db:{REGION}:{ACCOUNT}:dbuser:{resource_id}/{user}"
        return self.refusal(role_arn, principal, "rds-db:connect", resource)

    def function_url_refusal(self, function_logical_id: str) -> str | None:
        """Why the function's URL refuses an anonymous request; ``None`` when it serves it."""
        if not self.enforce:
            return None
        if function_logical_id not in self._url_refusals:
            self._url_refusals[function_logical_id] = function_url_refusal(
                self.template, self.references, function_logical_id
            )
        return self._url_refusals[function_logical_id]


# What Lambda's poller calls with the function's execution role, which
# CreateEventSourceMapping checks (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/
# SQSDeveloperGuide/sqs-configure-lambda-function-trigger.html: "The Lambda execution role
# must include ... sqs:DeleteMessage, sqs:GetQueueAttributes, sqs:ReceiveMessage"; the same
# as AWS's managed policy AWSLambdaSQSQueueExecutionRole).
EVENT_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


# ---- the function URL's resource policy ------------------------------------------------------

# What a function URL answers a request its resource policy does not allow (403, with the
# header x-amzn-ErrorType: AccessDeniedException): awsdocs/aws-lambda-developer-guide#494.
FUNCTION_URL_FORBIDDEN = (
    "Forbidden. For troubleshooting Function URL authorization issues, see: "
    "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html"
)


def function_url_refusal(
    template: Mapping[str, Any], references: Mapping[str, str], function_logical_id: str
) -> str | None:
    """Why an anonymous request to the function's URL is refused; ``None`` when served.

    https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html: with ``AuthType`` NONE
    "your function's resource-based policy is always in effect and must grant public
    access"; "Starting in October 2025, new function URLs will require both
    lambda:InvokeFunctionUrl and lambda:InvokeFunction permissions". The policy is the
    function's ``AWS::Lambda::Permission`` resources (principal ``*``; the first with the
    condition ``lambda:FunctionUrlAuthType`` NONE, the second ``lambda:InvokedViaFunctionUrl``)."""
    arn = references[f"{function_logical_id}.Arn"]
    urls = [
        url["Properties"]
        for url in resources(template, "AWS::Lambda::Url").values()
        if resolve(url["Properties"]["TargetFunctionArn"], references) == arn
    ]
    if not urls:
        return f"{function_logical_id} has no function URL"
    auth_type = urls[0].get("AuthType")
    if auth_type != "NONE":
        return f"the function URL's AuthType is {auth_type}: an unsigned request is not authorized"
    context = {"lambda:FunctionUrlAuthType": "NONE", "lambda:InvokedViaFunctionUrl": "true"}
    statements = [
        permission["Properties"]
        for permission in resources(template, "AWS::Lambda::Permission").values()
        if resolve(permission["Properties"]["FunctionName"], references)
        in (arn, function_logical_id, references.get(function_logical_id))
    ]
    for action in ("lambda:InvokeFunctionUrl", "lambda:InvokeFunction"):
        if not any(_grants_public(statement, action, context) for statement in statements):
            return f"the function's resource-based policy does not grant {action} to principal *"
    return None


def _grants_public(permission: Mapping[str, Any], action: str, context: Mapping[str, str]) -> bool:
    """Whether an ``AWS::Lambda::Permission`` allows anyone ``action`` in ``context``."""
    granted = str(permission.get("Action", ""))
    if permission.get("Principal") != "*" or granted.lower() not in (
        action.lower(),
        "lambda:*",
        "*",
    ):
        return False
    auth_type = permission.get("FunctionUrlAuthType")
    if auth_type is not None and auth_type != context["lambda:FunctionUrlAuthType"]:
        return False
    via_url = permission.get("InvokedViaFunctionUrl")
    return via_url is None or str(via_url).lower() == context["lambda:InvokedViaFunctionUrl"]


# ---- each request authorized as AWS authorizes it ---------------------------------------------

# Operations whose IAM action has another name (the Service Authorization Reference).
_IAM_ACTION_NAMES = {
    ("lambda", "Invoke"): "InvokeFunction",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}


@dataclass(frozen=True)
class RequestTarget:
    """What AWS authorizes a request as: the IAM action on a resource, and how the
    service answers when it is denied."""

    service: str
    action: str
    resource: str

    def denied(self, principal: str) -> Exception:
        message = denial(principal, self.action, self.resource, Decision.IMPLICIT_DENY)
        if self.service == "lambda":
            return _LambdaAccessDenied(message)
        if self.service == "sqs":
            return _SqsAccessDenied(message)
        error: Exception = JsonRESTError("AccessDeniedException", message)
        return error


class _LambdaAccessDenied(LambdaClientError):  # type: ignore[misc]
    code = 403

    def __init__(self, message: str) -> None:
        super().__init__("AccessDeniedException", message)


class _SqsAccessDenied(JsonRESTError):  # type: ignore[misc]
    code = 403

    def __init__(self, message: str) -> None:
        super().__init__("AccessDenied", message)


def request_target(response: Any, resource: str) -> RequestTarget:
    """The IAM action and resource of the request ``response`` (a moto response object)
    serves; ``resource`` is what moto determined (a queue's ARN, else ``*``)."""
    scope = str(response.headers.get("Authorization", "")).partition("Credential=")[2]
    parts = scope.partition(",")[0].split("/")
    service = parts[3] if len(parts) > 3 else str(getattr(response, "service_name", ""))
    operation = str(response._get_action())
    action = f"{service}:{_IAM_ACTION_NAMES.get((service, operation), operation)}"
    region, account = str(response.region), str(response.current_account)
    if service == "lambda":
        resource = _lambda_resource(str(response.path), response.querystring, region, account)
    elif service in ("states", "secretsmanager"):
        body = _json_body(response)
        if service == "states":
            resource = str(
                body.get("stateMachineArn")
                or body.get("executionArn")
                or body.get("activityArn")
                or "*"
            )
        elif body.get("SecretId"):
            resource = _secret_arn(str(body["SecretId"]), region, account)
    return RequestTarget(service, action, resource)


def _json_body(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _lambda_resource(path: str, query: Mapping[str, Any], region: str, account: str) -> str:
    parts = [unquote(part) for part in path.split("/")]
    if "functions" not in parts or parts.index("functions") + 1 >= len(parts):
        return "*"
    name = parts[parts.index("functions") + 1]
    qualifier = (query.get("Qualifier") or [None])[0]
    return _function_arn({"FunctionName": name, "Qualifier": qualifier}, region, account)


def _secret_arn(secret_id: str, region: str, account: str) -> str:
    if secret_id.startswith("arn:"):
        return secret_id
    from moto.secretsmanager.models import secretsmanager_backends

    try:
        secret = secretsmanager_backends[account][region].describe_secret(secret_id)
        return str(secret["ARN"] if isinstance(secret, dict) else secret.arn)
    except Exception:  # a secret that does not exist: AWS authorizes the name as given
        return f"arn:{_PARTITION}:secretsmanager:{region}:{account}:secret:{secret_id}"


class AuthorizedRequest(IAMRequest):  # type: ignore[misc]
    """moto's IAM request (signature, access key, policies), authorized as ``target``
    says and refused with the service's error."""

    def __init__(self, *, target: RequestTarget, **kwargs: Any) -> None:
        self._target = target
        if not kwargs.get("body"):
            # (moto signs an empty body as its parsed parameters: a Lambda Invoke without
            # a payload, signed correctly, would not match)
            kwargs["data"] = {}
        super().__init__(**kwargs)
        self._action = target.action

    def _raise_access_denied(self) -> None:
        raise self._target.denied(self._access_key.arn)


def authorize(response: Any, resource: str = "*") -> None:
    """Authenticate and authorize the request ``response`` serves, as AWS would (while
    moto's IAM authorization is on; moto counts the request otherwise)."""
    target = request_target(response, resource)
    response._authenticate_and_authorize_action(
        functools.partial(AuthorizedRequest, target=target), target.resource
    )


# ---- each task checked against its state machine's role --------------------------------------


def check_task(
    permissions: Permissions,
    state: Any,
    env: Any,
    runtime: Any,
    parameters: Mapping[str, Any],
) -> None:
    """Fail the task ``state`` (a moto service task whose parameters are evaluated, or a
    task whose Resource is a function's ARN) as AWS fails it when its state machine's
    role may not do what its integration needs."""
    from moto.stepfunctions.parser.api import (
        HistoryEventType,
        LambdaFunctionStartFailedEventDetails,
        TaskFailedEventDetails,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    denied = permissions.task_refusal(
        str(env.aws_execution_details.role_arn),
        str(env.states.context_object.context_object_data["Execution"]["Id"]),
        str(state.resource.resource_arn),
        parameters,
        str(runtime.region),
        str(runtime.account),
    )
    if denied is None:
        return
    name = (
        StatesErrorName(typ=StatesErrorNameType.StatesRuntime)
        if denied.error == StatesErrorNameType.StatesRuntime.to_name()
        else CustomErrorName(denied.error)
    )
    if not hasattr(state, "_get_sfn_resource"):  # a function's ARN as the Resource
        details = EventDetails(
            lambdaFunctionStartFailedEventDetails=LambdaFunctionStartFailedEventDetails(
                error=denied.error, cause=denied.cause
            )
        )
        event_type = HistoryEventType.LambdaFunctionStartFailed
    else:
        details = EventDetails(
            taskFailedEventDetails=TaskFailedEventDetails(
                error=denied.error,
                cause=denied.cause,
                resource=state._get_sfn_resource(),
                resourceType=state._get_sfn_resource_type(),
            )
        )
        event_type = HistoryEventType.TaskFailed
    raise FailureEventException(
        FailureEvent(env=env, error_name=name, event_type=event_type, event_details=details)
    )
