"""A deploy rehearsal: what the synthesized template describes, stood up on a moto server
and an embedded PostgreSQL, and nothing the template does not say.

- Every secret holds what Secrets Manager generates from its ``GenerateSecretString``;
  the database secret also holds exactly the keys the RDS secret attachment adds
  (``engine``, ``host``, ``port``, ``dbInstanceIdentifier``).
- The database and its master user are created from the instance's properties
  (``DBName``, ``MasterUsername``), with the generated password. The instance's endpoint is
  TLS on 127.0.0.1 (``TlsEndpoint``), as functions that sign IAM tokens for a host name
  and verify the server need: its certificate is of the run's own CA, for that address,
  and a function the template points at the RDS CA bundle (``DB_SSLROOTCERT``) gets the
  run's CA in its place, so it connects ``verify-full`` as on AWS.
- The instance has RDS for PostgreSQL's roles (``rds_roles``): the master user is no
  superuser but a member of ``rds_superuser``, owns the database and signs in with its
  password; ``rds_iam`` exists, and a role that is a member of it signs in only with an
  IAM authentication token, checked by the endpoint (``IamTokens``).
- Every function runs in a process of its own (``devstack.emulation.sandbox``) whose environment
  is the function's template environment, resolved, plus what the Lambda runtime
  provides (region, the function's name, credentials of its own execution role as the
  template defines it) and the emulation's AWS endpoint. Every call it makes is
  authorized against its role (devstack.emulation.iam), as every task against its state
  machine's role. What it writes during an invocation goes to its log group
  (devstack.emulation.function_logs), as Lambda sends it there.
- The queues come from the template's queue properties, the state machine from its
  definition, an execution's input from the schedule's target.

A function that needs something the template does not give it fails; the rehearsal
raises ``RehearsalError`` naming the function and what it said.

What the IAM sign-in checks, and what it does not: a member of ``rds_iam`` is asked for
a cleartext password inside TLS (as RDS's PAM sign-in asks) and admitted only when it is
a token of ``generate_db_auth_token``'s form (``host:port/?Action=connect&DBUser=...``
with the SigV4 query parameters) for this endpoint's host and port, this user, action
``connect``, the instance's region and service ``rds-db``, signed at most 15 minutes ago
(and no longer than its own ``X-Amz-Expires``), whose SigV4 signature verifies with the
secret key of its access key id (credentials the rehearsal's Lambda runtime gave a
function, with their session token), and whose signer's role may ``rds-db:connect`` on
``arn:aws:rds-db:REGION:ACCOUNT:dbuser:<DbiResourceId>/<user>`` as the template grants
it. A plain password, a token for another user, host, port or region, an expired one,
one signed with other credentials or by a role without ``rds-db:connect`` is refused
with RDS's message.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import os
import secrets
import ssl
import string
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, quote

import psycopg2
from moto.core.models import DEFAULT_ACCOUNT_ID
from psycopg2 import sql

from devstack.emulation import function_logs, sessions
from devstack.emulation.function_url import FunctionUrl
from devstack.emulation.iam import Permissions
from devstack.emulation.moto_adapter import lambdas_in_process
from devstack.emulation.moto_services.sandboxes import InProcessLambdas
from devstack.emulation.sqs import queues_from_template
from devstack.emulation.stepfunctions import DeployedStateMachine, deploy
from devstack.emulation.template import REGION, resources, tick_schedule
from devstack.local.demo import free_port
from devstack.local.stack import moto_server
from devstack.peers.postgres import embedded_postgres, query
from devstack.peers.tls import LOOPBACK, ServerCertificate, ThrowawayCa, TlsFront, message, receive
from escalator.config import RDS_CA_BUNDLE_FILE

SECRET = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type
ATTACHMENT = "AWS::SecretsManager::SecretTargetAttachment"
INSTANCE = "AWS::RDS::DBInstance"
FUNCTION = "AWS::Lambda::Function"


# The instance's endpoint address, which the functions connect to (and sign tokens for).
ENDPOINT_HOST = LOOPBACK

# The credentials the rehearsal deploys with (admitted as the account's administrator).
DEPLOYER_ACCESS_KEY = "rehearsal"
DEPLOYER_SECRET_KEY = "rehearsal"  # noqa: S105 - the emulator's

# Asks the client for its password in clear text (inside TLS here), as RDS's PAM sign-in
# of an rds_iam member does.
_CLEARTEXT_PASSWORD = b"R" + struct.pack("!ii", 8, 3)
# A role that is a member of rds_iam, directly or not, as pg_hba's "+rds_iam" matches
# (not through a superuser's powers), leaving out grants that carry ADMIN OPTION alone:
# rds_superuser's on rds_iam only stands in for RDS's own right to grant it (``rds_roles``).
_IAM_MEMBER = """
WITH RECURSIVE granted (role) AS (
    SELECT oid FROM pg_roles WHERE rolname = %s
    UNION
    SELECT m.roleid FROM pg_auth_members m JOIN granted ON m.member = granted.role
    WHERE m.inherit_option OR m.set_option
)
SELECT EXISTS (SELECT FROM granted JOIN pg_roles r ON r.oid = granted.role
               WHERE r.rolname = 'rds_iam')
"""


@dataclass(frozen=True)
class IamTokens:
    """What the instance accepts as an IAM authentication token (module docstring)."""

    host: str
    port: int
    region: str
    credentials: Mapping[str, str]  # access key id -> secret access key
    # Access key id -> its session token, for keys that have one (a role's).
    session_tokens: Mapping[str, str] = field(default_factory=dict)
    # Why the signer (by access key id) may not connect as the user; None when it may.
    authorize: Callable[[str, str], str | None] | None = None
    lifetime: timedelta = timedelta(minutes=15)
    clock_skew: timedelta = timedelta(minutes=5)

    def refusal(self, token: str, user: str, now: datetime | None = None) -> str | None:
        """Why ``token`` does not sign ``user`` in; ``None`` when it does."""
        address, separator, query_string = token.partition("/?")
        if not separator:
            return "not an IAM authentication token"
        if address != f"{self.host}:{self.port}":
            return f"signed for {address}, not {self.host}:{self.port}"
        try:
            pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return "not an IAM authentication token"
        params = dict(pairs)
        if len(params) != len(pairs):
            return "a parameter is given twice"
        expected = {
            "Action": "connect",
            "DBUser": user,
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-SignedHeaders": "host",
        }
        for name, value in expected.items():
            if params.get(name) != value:
                return f"{name} is {params.get(name)!r}, not {value!r}"
        try:
            signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            expires = timedelta(seconds=int(params["X-Amz-Expires"]))
        except (KeyError, ValueError):
            return "no valid X-Amz-Date and X-Amz-Expires"
        signed_at = signed_at.replace(tzinfo=UTC)
        key_id, _, scope = params.get("X-Amz-Credential", "").partition("/")
        if scope != f"{signed_at:%Y%m%d}/{self.region}/rds-db/aws4_request":
            return f"credential scope {scope!r} is not rds-db in {self.region} on its date"
        now = now or datetime.now(UTC)
        if now >= signed_at + min(expires, self.lifetime):
            return "expired"
        if signed_at > now + self.clock_skew:
            return "signed in the future"
        secret = self.credentials.get(key_id)
        if secret is None:
            return f"unknown access key id {key_id!r}"
        signature = _sigv4_query_signature(secret, address, pairs, params["X-Amz-Date"], scope)
        if not hmac.compare_digest(params.get("X-Amz-Signature", ""), signature):
            return "the signature does not match"
        session_token = self.session_tokens.get(key_id)
        if session_token is not None and params.get("X-Amz-Security-Token") != session_token:
            return "the session token does not match"
        return self.authorize(key_id, user) if self.authorize is not None else None


def _sigv4_query_signature(
    secret: str, host: str, pairs: list[tuple[str, str]], timestamp: str, scope: str
) -> str:
    """The SigV4 signature of a presigned ``GET https://<host>/?<pairs>`` (no body)."""
    canonical_query = "&".join(
        f"{key}={value}"
        for key, value in sorted(
            (quote(key, safe="-_.~"), quote(value, safe="-_.~"))
            for key, value in pairs
            if key != "X-Amz-Signature"
        )
    )
    empty_body = hashlib.sha256(b"").hexdigest()
    canonical_request = f"GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{empty_body}"
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    string_to_sign = f"AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{digest}"
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class TlsEndpoint(TlsFront):
    """The instance's endpoint: TLS on 127.0.0.1:<port> with a certificate of the run's
    own CA (``devstack.peers.tls``), the plain protocol passed on to the embedded server. Like
    RDS with ``rds.force_ssl``, it refuses clients that do not ask for TLS. A member of
    ``rds_iam`` signs in here with an IAM token (``tokens``), or not at all; every other
    role is passed on to the server, which asks for its password."""

    def __init__(self, admin_url: str, server: ServerCertificate, *, iam_enabled: bool) -> None:
        super().__init__(admin_url, server)
        self._admin_url = admin_url
        self._iam_enabled = iam_enabled
        # (``rehearse`` gives it the functions' credentials and their roles)
        self.tokens = IamTokens(host=ENDPOINT_HOST, port=self.port, region=REGION, credentials={})
        self.iam_sign_ins: list[str] = []  # users admitted by IAM token
        self.iam_refusals: list[tuple[str, str]] = []  # (user, why), refused with 28P01

    def admit(self, client: ssl.SSLSocket, startup: bytes) -> bool:
        try:
            user = _startup_user(startup)
            if user is None or not self._iam_member(user):
                return True
        except psycopg2.Error:  # the server went away
            return False
        reason = self._iam_sign_in(client, user)
        if reason is not None:
            self.iam_refusals.append((user, reason))
            client.sendall(_fatal("28P01", f'PAM authentication failed for user "{user}"'))
            return False
        self.iam_sign_ins.append(user)
        return True

    def _iam_member(self, user: str) -> bool:
        return bool(query(self._admin_url, _IAM_MEMBER, (user,))[0][0])

    def _iam_sign_in(self, client: ssl.SSLSocket, user: str) -> str | None:
        """Ask for the password and check it as a token; why not, when it fails."""
        client.sendall(_CLEARTEXT_PASSWORD)
        if receive(client, 1) != b"p":
            return "the client sent no password"
        token = message(client)[4:].rstrip(b"\0").decode("utf-8", errors="replace")
        if not self._iam_enabled:
            return "IAM database authentication is not enabled on the instance"
        return self.tokens.refusal(token, user)


def _startup_user(startup: bytes) -> str | None:
    """The ``user`` of a protocol 3 startup message; ``None`` for anything else (a
    cancel request)."""
    (version,) = struct.unpack("!i", startup[4:8])
    if version >> 16 != 3:
        return None
    fields = startup[8:].split(b"\0")
    parameters = dict(zip(fields[0::2], fields[1::2], strict=False))
    user = parameters.get(b"user")
    return user.decode() if user else None


def _fatal(code: str, message: str) -> bytes:
    """A FATAL ErrorResponse with ``code`` (SQLSTATE) and ``message``."""
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    return b"E" + struct.pack("!i", len(fields) + 5) + fields + b"\0"


class RehearsalError(AssertionError):
    """The template does not give a function what it needs; the message names both."""


@dataclass(frozen=True)
class FunctionSpec:
    """One function as the template defines it."""

    logical_id: str
    handler: str
    environment: dict[str, str]
    timeout: int
    reserved: int | None


def generated_secret(properties: dict[str, Any]) -> dict[str, str]:
    """What Secrets Manager stores for ``GenerateSecretString``: the template's object
    with a random value under the generated key."""
    spec = properties["GenerateSecretString"]
    excluded = set(spec.get("ExcludeCharacters", ""))
    if spec.get("ExcludePunctuation"):
        excluded |= set(string.punctuation)
    alphabet = [char for char in string.ascii_letters + string.digits + string.punctuation
                if char not in excluded]  # fmt: skip
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    content: dict[str, str] = json.loads(spec.get("SecretStringTemplate", "{}"))
    content[spec["GenerateStringKey"]] = value
    return content


def function_specs(
    template: dict[str, Any], arns: dict[str, str], files: Mapping[str, str] | None = None
) -> dict[str, FunctionSpec]:
    """Escalator's functions, their environment resolved: ``arns`` gives what a ``Ref``
    or ``Fn::GetAtt`` stands for, by logical id (``"Instance.Endpoint.Address"`` for an
    attribute); ``files``, the file standing in here for one a variable names in the
    deployed code (the run's CA for the RDS CA bundle)."""
    stand_ins = files or {}
    specs = {}
    for logical_id, function in resources(template, FUNCTION).items():
        properties = function["Properties"]
        if not str(properties.get("Handler", "")).startswith("escalator."):
            continue
        variables = properties.get("Environment", {}).get("Variables", {})
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            handler=properties["Handler"],
            environment={
                name: stand_ins.get(resolved, resolved)
                for name, value in variables.items()
                for resolved in [_resolve(logical_id, name, value, arns)]
            },
            timeout=int(properties.get("Timeout", 3)),
            reserved=properties.get("ReservedConcurrentExecutions"),
        )
    return specs


def _resolve(function: str, variable: str, value: Any, arns: dict[str, str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in arns:
        return arns[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        attribute = ".".join(value["Fn::GetAtt"])
        if attribute in arns:
            return arns[attribute]
    raise RehearsalError(f"{function}: {variable} = {value!r} is not something a deploy gives")


class Sandbox:
    """One function's process; invocations take turns (one at a time, as one sandbox)."""

    def __init__(
        self, spec: FunctionSpec, runtime: dict[str, str], log: IO[str], code: Path | None = None
    ) -> None:
        self.spec = spec
        self.code = code
        environment = {**runtime, **spec.environment, "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id}
        if code is not None:
            # Another release's code (its lambdas/ folder) before this checkout's: the
            # sandbox's own module still comes from here, the handler from there.
            environment["PYTHONPATH"] = str(code)
        self._process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "devstack.emulation.sandbox", spec.handler, str(spec.timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=environment,
            text=True,
        )
        self._lock = threading.Lock()
        # What this process answered: each event and its answer (``invoke``'s).
        self.served: list[tuple[dict[str, Any], dict[str, Any]]] = []
        # The sandbox a deploy started in its place (``replace``).
        self.successor: Sandbox | None = None

    def replace(self, successor: Sandbox) -> None:
        """A deploy started ``successor`` for this function: an invocation that was routed
        here and still waits for its turn is served there (on Lambda, an update fails no
        invocation: each runs in the old or the new code), the one under way finishes
        here, then the process ends."""
        self.successor = successor
        self.end_input()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """The function's answer: ``ok`` with ``payload``, or ``errorType``/``errorMessage``."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        with self._lock:
            ended = self._process.stdin.closed
            if not ended:
                self._process.stdin.write(json.dumps(event) + "\n")
                self._process.stdin.flush()
                line = self._process.stdout.readline()
        if ended:
            # (its turn came after a deploy replaced it: the successor serves it)
            if self.successor is None:
                raise RehearsalError(f"{self.spec.logical_id}: invoked after it was removed")
            return self.successor.invoke(event)
        if not line:
            raise RehearsalError(f"{self.spec.logical_id}: the sandbox process died")
        answer: dict[str, Any] = json.loads(line)
        self.served.append((event, answer))
        # (to the invocation's log group: InProcessLambdas, or Rehearsal.invoke, names it)
        log = function_logs.current()
        if log is not None:
            log.write((at, text) for at, text in answer.pop("logs", []))
        return answer

    def handler(self, event: dict[str, Any], context: Any) -> Any:
        """As a handler of ``InProcessLambdas``: the payload, or the function's error
        raised under its own class name (what Step Functions matches)."""
        answer = self.invoke(event)
        if answer["ok"]:
            return answer["payload"]
        raise type(answer["errorType"], (Exception,), {})(answer["errorMessage"])

    def end_input(self) -> None:
        """No more invocations: the process ends once it has answered what it was sent
        (an invocation under way keeps its turn and gets its answer)."""
        with self._lock:
            if self._process.stdin is not None and not self._process.stdin.closed:
                self._process.stdin.close()

    def close(self) -> None:
        self.end_input()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()


def close_sandboxes(sandboxes: list[Sandbox]) -> None:
    """End every sandbox: all told at once, then each waited for (a process takes a few
    tenths of a second to exit; one after the other, a dozen took seconds)."""
    for sandbox in sandboxes:
        sandbox.end_input()
    for sandbox in sandboxes:
        sandbox.close()


@dataclass
class Rehearsal:
    """The stage: AWS on a moto server, the database, and a sandbox per function."""

    endpoint_url: str
    session: Any
    database_url: str  # the embedded server's administrator, for the test's own checks
    secret_arns: dict[str, str]  # logical id -> ARN
    queue_urls: dict[str, str]  # logical id -> URL
    sandboxes: dict[str, Sandbox]
    machine: DeployedStateMachine
    lambdas: InProcessLambdas
    schedule_input: dict[str, Any]
    database_name: str
    function_urls: dict[str, str]  # the target function's logical id -> its URL
    log: Path
    endpoint: TlsEndpoint  # the instance's: who signed in by IAM token, who was refused
    # The run's CA, whose certificate the endpoint presents: the functions' root
    # certificates, where the template names the RDS CA bundle.
    root_certificates: Path
    permissions: Permissions  # the template's roles, and each function's credentials
    template: dict[str, Any] = field(default_factory=dict)  # the release deployed last
    references: dict[str, str] = field(default_factory=dict)  # what its Refs stand for
    code: Path | None = None  # its lambdas/ folder, when not this checkout's
    retired: list[Sandbox] = field(default_factory=list)  # sandboxes a deploy replaced
    log_file: IO[str] | None = None  # functions.log, which every sandbox writes to

    def start_sandbox(self, spec: FunctionSpec, code: Path | None) -> Sandbox:
        """A new process for the function ``spec`` describes, with its role's credentials."""
        assert self.log_file is not None
        runtime = _sandbox_runtime(
            self.endpoint_url, self.permissions.function_credentials(spec.logical_id)
        )
        return Sandbox(spec, runtime, self.log_file, code)

    def ca_stand_ins(self) -> dict[str, str]:
        """The files standing in for those a function's variables name (the RDS CA bundle)."""
        from infra.bundling import deployed_path

        return {deployed_path(RDS_CA_BUNDLE_FILE): str(self.root_certificates)}

    def credentials(self, prefix: str) -> Any:
        """What the Lambda runtime gave the function whose logical id starts so (its
        role's credentials: ``ReadOnlyCredentials``)."""
        return self.permissions.function_credentials(self.function(prefix).spec.logical_id)

    def client_as(self, prefix: str, service: str) -> Any:
        """A client of ``service`` signing as that function's role does."""
        signing = self.permissions.signing(self.credentials(prefix))
        return self.session.client(service, endpoint_url=self.endpoint_url, **signing)

    def function(self, prefix: str) -> Sandbox:
        """The sandbox of the function whose logical id starts with ``prefix``."""
        (found,) = [box for name, box in self.sandboxes.items() if name.startswith(prefix)]
        return found

    def invoke(self, prefix: str, event: dict[str, Any]) -> Any:
        """Invoke a function directly; ``RehearsalError`` naming it when it fails."""
        sandbox = self.function(prefix)
        with self.lambdas.logging_as(sandbox.spec.logical_id):
            answer = sandbox.invoke(event)
        if not answer["ok"]:
            raise RehearsalError(
                f"{sandbox.spec.logical_id} ({sandbox.spec.handler}) failed: "
                f"{answer['errorType']}: {answer['errorMessage']}"
            )
        return answer["payload"]

    def put_secret(self, prefix: str, value: dict[str, str]) -> None:
        """What the operator does once: the provider's real credentials into its secret."""
        (arn,) = [arn for name, arn in self.secret_arns.items() if name.startswith(prefix)]
        self.session.client("secretsmanager", endpoint_url=self.endpoint_url).put_secret_value(
            SecretId=arn, SecretString=json.dumps(value)
        )


def _sandbox_runtime(endpoint_url: str, credentials: Any) -> dict[str, str]:
    """What the Lambda runtime gives a function (its execution role's ``credentials``),
    and the emulation's endpoint."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TZ": "UTC",
        "LANG": "C.UTF-8",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_SESSION_TOKEN": credentials.token,
        "AWS_ENDPOINT_URL": endpoint_url,
    }


@contextmanager
def rehearse(
    template: dict[str, Any], workdir: Path, *, code: Path | None = None
) -> Iterator[Rehearsal]:
    """Stand the template up under ``workdir``; close everything on exit. ``code``: the
    ``lambdas/`` folder of the release the template is of, when it is not this checkout's
    (devstack.rehearsal.upgrade)."""
    with ExitStack() as stack:
        admin_url = stack.enter_context(embedded_postgres(workdir / "postgres"))
        ((_, instance),) = resources(template, INSTANCE).items()
        # The instance's certificate is of the run's own CA, which stands in for the RDS
        # CA bundle wherever the template points a function at it.
        authority = ThrowawayCa(workdir / "ca", "Escalator rehearsal CA")
        proxy = TlsEndpoint(
            admin_url,
            authority.issue(ENDPOINT_HOST),
            iam_enabled=instance["Properties"].get("EnableIAMDatabaseAuthentication") is True,
        )
        stack.callback(proxy.close)
        endpoint = stack.enter_context(moto_server(free_port()))
        session = sessions.session(
            region_name=REGION,
            aws_access_key_id=DEPLOYER_ACCESS_KEY,
            aws_secret_access_key=DEPLOYER_SECRET_KEY,
        )
        arns, database_name = _secrets(template, session, endpoint, admin_url, proxy.port)
        queue_urls = _queues(template, session, endpoint, arns)
        # Each function URL, served on loopback by its function (once that is deployed).
        lambdas = stack.enter_context(lambdas_in_process())
        permissions = lambdas.permissions
        function_urls = []
        for url_id, url in resources(template, "AWS::Lambda::Url").items():
            target = url["Properties"]["TargetFunctionArn"]["Fn::GetAtt"][0]
            function_url = FunctionUrl(
                session.client("lambda", endpoint_url=endpoint),
                target,
                refusal=functools.partial(permissions.function_url_refusal, target),
            )
            arns[f"{url_id}.FunctionUrl"] = function_url.url
            function_urls.append(function_url)
        # A state machine's ARN is known from its name before it exists (the initiator
        # is given the delivery window's).
        for machine_id, machine in resources(template, "AWS::StepFunctions::StateMachine").items():
            name = machine["Properties"].get("StateMachineName", machine_id)
            arns[machine_id] = f"arn:aws:states:{REGION}:{DEFAULT_ACCOUNT_ID}:stateMachine:{name}"
        # The roles, before the functions' processes start with their credentials.
        permissions.admit_session(session)
        permissions.install(template, _references(template, arns))
        proxy.tokens = dataclasses.replace(
            proxy.tokens,
            credentials=permissions.secrets,
            session_tokens=permissions.session_tokens,
            authorize=permissions.connect_refusal,
        )
        # (infra.bundling is the CDK's: imported here, not by whoever imports this module)
        from infra.bundling import deployed_path

        log_path = workdir / "functions.log"
        log = stack.enter_context(log_path.open("a", encoding="utf-8"))
        sandboxes = {
            logical_id: Sandbox(
                spec,
                _sandbox_runtime(endpoint, permissions.function_credentials(logical_id)),
                log,
                code,
            )
            for logical_id, spec in function_specs(
                template, arns, {deployed_path(RDS_CA_BUNDLE_FILE): str(authority.certificate)}
            ).items()
        }
        for sandbox in sandboxes.values():
            lambdas.overrides[sandbox.spec.logical_id] = sandbox.handler
        retired: list[Sandbox] = []
        stack.callback(lambda: close_sandboxes([*retired, *sandboxes.values()]))
        machine = deploy(session, template, endpoint_url=endpoint, lambdas=lambdas)
        # (each function's configuration shows the environment it runs with, as on AWS)
        functions = session.client("lambda", endpoint_url=endpoint)
        for sandbox in sandboxes.values():
            functions.update_function_configuration(
                FunctionName=sandbox.spec.logical_id,
                Environment={"Variables": sandbox.spec.environment},
            )
        for function_url in function_urls:
            stack.enter_context(function_url)
        _, schedule = tick_schedule(template)
        yield Rehearsal(
            endpoint_url=endpoint,
            session=session,
            database_url=_dsn(admin_url, database_name),
            secret_arns={name: arns[name] for name in resources(template, SECRET)},
            queue_urls=queue_urls,
            sandboxes=sandboxes,
            machine=machine,
            lambdas=lambdas,
            schedule_input=json.loads(schedule["Properties"]["Target"]["Input"]),
            database_name=database_name,
            function_urls={url.function: url.url for url in function_urls},
            log=log_path,
            endpoint=proxy,
            root_certificates=authority.certificate,
            permissions=permissions,
            template=template,
            references=arns,
            code=code,
            retired=retired,
            log_file=log,
        )


def _references(template: dict[str, Any], arns: Mapping[str, str]) -> dict[str, str]:
    """What the template's references stand for in this rehearsal (its roles' policies
    name them): what was created, each queue's ARN, the instance's resource id."""
    references = dict(arns)
    for queue_id in resources(template, "AWS::SQS::Queue"):
        references[f"{queue_id}.Arn"] = arns[queue_id]
    for instance_id in resources(template, INSTANCE):
        references[f"{instance_id}.DbiResourceId"] = "db-" + "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(26)
        )
    return references


def _dynamic(value: Any, secrets_by_id: dict[str, dict[str, str]]) -> str:
    """A property as CloudFormation resolves it: a literal, or a dynamic reference
    ``{{resolve:secretsmanager:<secret>:SecretString:<key>::}}`` to a generated secret."""
    if isinstance(value, str):
        return value
    parts = value.get("Fn::Join", ["", []])[1] if isinstance(value, dict) else []
    if len(parts) == 3 and parts[0] == "{{resolve:secretsmanager:" and "Ref" in parts[1]:
        key = parts[2].removeprefix(":SecretString:").removesuffix("::}}")
        return secrets_by_id[parts[1]["Ref"]][key]
    raise RehearsalError(f"cannot resolve {value!r} as CloudFormation would")


def _dsn(admin_url: str, database: str) -> str:
    return psycopg2.extensions.make_dsn(admin_url, dbname=database)


def _secrets(
    template: dict[str, Any], session: Any, endpoint: str, admin_url: str, port: int
) -> tuple[dict[str, str], str]:
    """Create every secret as generated, attach the database's, and create the database
    and its master user from the instance's properties. Returns the ARNs by logical id
    (an attachment's ``Ref`` is its secret's ARN) and the database's name."""
    client = session.client("secretsmanager", endpoint_url=endpoint)
    values = {name: generated_secret(secret["Properties"])
              for name, secret in resources(template, SECRET).items()}  # fmt: skip
    ((attachment_id, attachment),) = resources(template, ATTACHMENT).items()
    ((instance_id, instance),) = resources(template, INSTANCE).items()
    secret_id = attachment["Properties"]["SecretId"]["Ref"]
    properties = instance["Properties"]
    values[secret_id] |= {
        "engine": properties["Engine"],
        "host": ENDPOINT_HOST,  # the instance's endpoint: the proxy to the embedded server
        "port": str(port),
        "dbInstanceIdentifier": instance_id.lower(),
    }
    user = _dynamic(properties["MasterUsername"], values)
    database = properties.get("DBName", "postgres")
    rds_roles(admin_url, user, values[secret_id]["password"], database)
    arns = {
        name: client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
        for name, value in values.items()
    }
    arns[attachment_id] = arns[secret_id]
    # The instance's endpoint: the proxy to the embedded server.
    arns[f"{instance_id}.Endpoint.Address"] = ENDPOINT_HOST
    arns[f"{instance_id}.Endpoint.Port"] = str(port)
    # A function's Ref is its name; the rehearsal registers each under its logical id.
    arns |= {name: name for name in resources(template, FUNCTION)}
    return arns, database


# What rds_superuser holds WITH ADMIN OPTION on RDS for PostgreSQL 17 (pg_dumpall of an
# instance), of which this server has those it knows (pg_maintain is 17's).
RDS_SUPERUSER_HOLDS = (
    "pg_checkpoint",
    "pg_create_subscription",
    "pg_maintain",
    "pg_monitor",
    "pg_read_all_data",
    "pg_signal_backend",
    "pg_use_reserved_connections",
    "pg_write_all_data",
    "rds_password",
    "rds_replication",
)


def rds_roles(admin_url: str, master: str, password: str, database: str) -> None:
    """As the server's superuser (RDS's ``rdsadmin``): RDS's roles, the master user as
    RDS creates it (``NOSUPERUSER CREATEROLE CREATEDB``, a member of ``rds_superuser``),
    the database it owns; then the server asks every role but its superuser and the
    members of ``rds_iam`` (whom the endpoint signs in) for a password."""
    administrator = psycopg2.extensions.parse_dsn(admin_url)["user"]
    if master == administrator:
        raise RehearsalError(f"the master user {master!r} is the embedded server's superuser")
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for role in ("rds_superuser", "rds_iam", "rds_password", "rds_replication"):
                cursor.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            cursor.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname",
                (list(RDS_SUPERUSER_HOLDS),),
            )
            held = [sql.Identifier(name) for (name,) in cursor.fetchall()]
            cursor.execute(
                sql.SQL("GRANT {} TO rds_superuser WITH ADMIN OPTION").format(
                    sql.SQL(", ").join(held)
                )
            )
            # RDS's own code lets a member of rds_superuser grant rds_iam without holding
            # it; PostgreSQL 16 and later let only a holder of ADMIN OPTION grant a role,
            # so rds_superuser gets that, and nothing else of rds_iam.
            cursor.execute(
                "GRANT rds_iam TO rds_superuser WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
            )
            cursor.execute(
                sql.SQL(
                    "CREATE ROLE {} WITH LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE"
                    " NOREPLICATION PASSWORD %s VALID UNTIL 'infinity'"
                ).format(sql.Identifier(master)),
                (password,),
            )
            cursor.execute(sql.SQL("GRANT rds_superuser TO {}").format(sql.Identifier(master)))
            cursor.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(master)
                )
            )
            cursor.execute("SHOW hba_file")
            ((hba_file,),) = cursor.fetchall()
            # The master user's line comes first: through rds_superuser's ADMIN OPTION on
            # rds_iam, "+rds_iam" matches the master user too.
            Path(hba_file).write_text(
                f"local all {_hba_name(administrator)} trust\n"
                f"local all {_hba_name(master)} scram-sha-256\n"
                "local all +rds_iam trust\n"  # the endpoint has checked their token
                "local all all scram-sha-256\n",
                encoding="utf-8",
            )
            cursor.execute("SELECT pg_reload_conf()")
    finally:
        connection.close()
    _await_password_required(admin_url, master, database)


def _hba_name(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def _await_password_required(admin_url: str, user: str, database: str) -> None:
    """Wait until the server has reloaded its pg_hba.conf: ``user`` needs a password."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            psycopg2.connect(
                psycopg2.extensions.make_dsn(admin_url, user=user, password="", dbname=database)
            ).close()
        except psycopg2.OperationalError:
            return
        time.sleep(0.02)
    raise RehearsalError("the embedded server did not start asking for passwords")


def _queues(
    template: dict[str, Any], session: Any, endpoint: str, arns: dict[str, str]
) -> dict[str, str]:
    """The queues with the template's attributes, named by their logical ids."""
    created = queues_from_template(template, session.client("sqs", endpoint_url=endpoint))
    arns.update({name: queue.arn for name, queue in created.items()})
    return {name: queue.url for name, queue in created.items()}
