"""The deploy rehearsal: the synthesized template stood up as CloudFormation, Secrets
Manager and Lambda would, each function in its own process with exactly its template
environment; then the migration as the trigger runs it, and start, delivery and stop."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
import requests
from botocore.exceptions import ClientError
from psycopg2.extensions import make_dsn

from devstack.emulation.context import default_log_group
from devstack.emulation.sqs import EventSource
from devstack.emulation.template import (
    EXPRESS,
    REGION,
    STANDARD,
    resources,
    schedule_of,
    state_machine,
    synthesized_template,
    synthesized_with,
    tick_schedule,
)
from devstack.peers.postgres import query
from devstack.peers.providers import Peers, running_peers
from devstack.peers.tls import ThrowawayCa
from devstack.polling import wait_until
from devstack.rehearsal.deployment import Rehearsal, rehearse
from escalator.channels.twilio import status_callback_for
from escalator.client import Producer
from escalator.config import database_settings
from escalator.database import Database, UnitOfWork, connect
from escalator.errors import DatabaseError
from escalator.lifecycle import NotificationState, ProcessState
from escalator.limits import near_due_horizon
from escalator.migrations import APPLICATION_ROLE, PURGE_ROLE, default_sql_dir, discover
from escalator.verification import Deployment, deployment_at_endpoint
from tests.support.lifecycle import bring_to, insert_notification, insert_process

# Long, and one worker: every test shares the module's stage.
pytestmark = [pytest.mark.long, pytest.mark.xdist_group("rehearsal")]


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    with running_peers() as running:
        yield running


@pytest.fixture(scope="module")
def stage(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    """The stack as an operator deploys it, its PubNub origin given as context (or the
    template given to the session, with that setting: devstack.emulation.template)."""
    template = synthesized_with(pubnub_origin=peers.pubnub.url)
    with rehearse(template, tmp_path_factory.mktemp("rehearsal")) as rehearsal:
        yield rehearsal


def request_queue(stage: Rehearsal) -> str:
    (url,) = [url for name, url in stage.queue_urls.items() if "DeadLetters" not in name]
    return url


def feed_initiator(stage: Rehearsal, queue: str, sqs: Any) -> None:
    """What the queue holds, fed to the initiator as its event source mapping feeds it:
    polled as the initiator's role, until nothing is left."""
    source = EventSource(
        stage.client_as("FunctionsInitiator", "sqs"),
        queue,
        stage.function("FunctionsInitiator").handler,
        context=None,
        wait_seconds=0,
        redrive_sqs=sqs,
    )
    while source.poll_once():
        pass


def test_the_migration_runs_as_the_trigger_invokes_it(stage: Rehearsal) -> None:
    # The trigger invokes the launcher with no payload once the database exists; the
    # launcher reads the master secret and hands it to the migration in the VPC.
    migrated = stage.invoke("FunctionsMigrateLauncher", {})

    assert migrated["applied"] == [m.filename for m in discover(default_sql_dir())]
    tables = query(
        stage.database_url,
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'notification'",
    )
    assert tables == [(1,)]


def test_start_delivery_and_stop_run_through_the_rehearsed_functions(
    stage: Rehearsal, peers: Peers
) -> None:
    stage.invoke("FunctionsMigrateLauncher", {})  # a second deploy: nothing to apply
    # GIVEN the operator has put the provider's credentials in its secret
    stage.put_secret("PubNub", {"publish_key": "pub-c-rehearsal", "subscribe_key": "sub-c-r"})
    sqs = stage.session.client("sqs", endpoint_url=stage.endpoint_url)
    queue = request_queue(stage)
    producer = Producer(queue, sqs=sqs)
    now = int(time.time())
    producer.start(
        "restaurant-1",
        [
            {"channel": "console", "at": now + 2, "label": "order 1"},
            {"channel": "pubnub", "at": now + 2, "pubnub-channel": "restaurant-1-orders"},
        ],
    )
    producer.start("restaurant-2", [{"channel": "console", "at": now + 8, "label": "order 2"}])
    producer.stop("restaurant-2")

    # WHEN the event source feeds the initiator (every notification is due before a tick
    # could be trusted to claim it: the initiator starts their delivery windows itself,
    # over the Step Functions endpoint the template's environment names) and the
    # schedule starts the tick
    feed_initiator(stage, queue, sqs)
    expected = [
        ("restaurant-1", "completed", "console", "sent"),
        ("restaurant-1", "completed", "pubnub", "sent"),
        ("restaurant-2", "stopped", "console", "cancelled"),
    ]

    def rows() -> list[tuple[object, ...]]:
        return query(
            stage.database_url,
            """
            SELECT p.process_id, p.state, n.channel, n.state FROM notification n
            JOIN process p ON p.id = n.process_ref ORDER BY n.id
            """,
        )

    wait_until(lambda: rows() == expected, timeout=60, what="the near-due deliveries")
    description = stage.machine.run(stage.schedule_input, timeout=120)

    # THEN restaurant-1 got both, restaurant-2 nothing, all through the template's settings
    assert description["status"] == "SUCCEEDED"
    assert rows() == expected
    # (the initiator's windows delivered them, each claim its message's own, as the
    # database says: AWS describes no Express execution; a cancelled one keeps no owner)
    owners = [
        row[0]
        for row in query(stage.database_url, "SELECT claim_owner FROM notification ORDER BY id")
    ]
    assert [str(owner).startswith("arrival-") for owner in owners[:2]] == [True, True]
    assert owners[2] is None
    # AND the console notifier's process wrote its line to its log group, as Lambda
    # sends it there, naming the claim it went out under
    logs = stage.session.client("logs", endpoint_url=stage.endpoint_url)
    notifier = stage.function("FunctionsNotifierConsole").spec.logical_id
    events = logs.filter_log_events(
        logGroupName=default_log_group(notifier), filterPattern='"order 1"'
    )["events"]
    (console,) = [json.loads(event["message"]) for event in events]
    assert (console["message"], console["owner"]) == ("console notification", owners[0])
    (publication,) = [p for p in peers.pubnub.publications if p.channel == "restaurant-1-orders"]
    assert publication.publish_key == "pub-c-rehearsal"

    # AND the functions' warm connections are the application role's, signed in by IAM
    # (the server's own workers, autovacuum's, not counted; a backend of the test's own
    # administrator connections may linger a moment after its close: it goes, a
    # function's would stay)
    def users() -> list[tuple[Any, ...]]:
        return query(
            stage.database_url,
            "SELECT DISTINCT usename FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()",
        )

    wait_until(
        lambda: users() == [("escalator_app",)], timeout=10, what="only escalator_app connected"
    )
    assert set(stage.endpoint.iam_sign_ins) == {"escalator_app"}


def test_a_status_callback_runs_through_the_rehearsed_receiver_and_recorder(
    stage: Rehearsal,
) -> None:
    from twilio.request_validator import RequestValidator

    stage.invoke("FunctionsMigrateLauncher", {})
    # GIVEN the operator's Twilio credentials and a call on record
    token = "rehearsal-auth-token"
    stage.put_secret("Twilio", {"account_sid": "AC" + "0" * 32, "auth_token": token})
    sqs = stage.session.client("sqs", endpoint_url=stage.endpoint_url)
    queue = request_queue(stage)
    later = int(time.time()) + 3600
    Producer(queue, sqs=sqs).start(
        "restaurant-9", [{"channel": "phone", "at": later, "phone-number": "+385911234567"}]
    )
    feed_initiator(stage, queue, sqs)
    ((notification_id,),) = query(
        stage.database_url, "SELECT id FROM notification WHERE channel = 'phone'"
    )
    # (as if the call was placed and the notifier's answer lost: it awaits its callback)
    bring_to(
        stage.database_url,
        NotificationState.UNKNOWN,
        "id = %s",
        (notification_id,),
        claim_owner="x",
    )
    (receiver,) = [url for name, url in stage.function_urls.items() if "CallStatus" in name]
    url = status_callback_for(receiver, notification_id, token)
    form = {"CallSid": "CArehearsal", "CallStatus": "ringing"}

    # WHEN Twilio posts a signed status callback to the function URL, and a forger one
    signature = RequestValidator(token).compute_signature(url, form)
    signed = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=60)
    forged = requests.post(url, data={**form, "CallStatus": "completed"}, timeout=60,
                           headers={"X-Twilio-Signature": signature})  # fmt: skip

    # THEN the template's receiver (secret, recorder's name) and recorder (IAM sign-in as
    # the application role) wrote the signed one only
    assert (signed.status_code, forged.status_code) == (200, 403)
    assert query(
        stage.database_url,
        "SELECT state, provider_ref, provider_status FROM notification WHERE id = %s",
        (notification_id,),
    ) == [("sent", "CArehearsal", "ringing")]


def master_secret(stage: Rehearsal) -> dict[str, str]:
    """The master secret, as the launcher reads it."""
    (arn,) = [arn for name, arn in stage.secret_arns.items() if name.startswith("DatabaseMaster")]
    client = stage.session.client("secretsmanager", endpoint_url=stage.endpoint_url)
    secret: dict[str, str] = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    return secret


def test_the_master_user_is_a_member_of_rds_superuser_and_no_superuser(stage: Rehearsal) -> None:
    stage.invoke("FunctionsMigrateLauncher", {})
    secret = master_secret(stage)
    master = secret["username"]

    # The master user as RDS creates it: no superuser, a member of rds_superuser, the
    # owner of the database (so that it may revoke CREATE on the public schema)
    assert query(
        stage.database_url,
        """
        SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb,
               pg_has_role(oid, 'rds_superuser', 'USAGE'),
               oid = (SELECT datdba FROM pg_database WHERE datname = current_database())
        FROM pg_roles WHERE rolname = %s
        """,
        (master,),
    ) == [(False, True, True, True, True, True)]
    # Signed in through the endpoint with the secret's password, it has no superuser's powers
    dsn = make_dsn(
        host=secret["host"],
        port=secret["port"],
        dbname=stage.database_name,
        user=master,
        sslmode="require",
    )
    connection = psycopg2.connect(dsn, password=secret["password"])
    with closing(connection), connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_setting('is_superuser')")
        assert cursor.fetchone() == (master, "off")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cursor.execute("SELECT pg_read_file('postgresql.conf')")
    # and another password does not sign it in
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(dsn, password="not-" + secret["password"])


def test_the_migration_makes_the_application_and_purge_roles_members_of_rds_iam(
    stage: Rehearsal,
) -> None:
    stage.invoke("FunctionsMigrateLauncher", {})

    assert query(
        stage.database_url,
        "SELECT rolname, rolcanlogin, rolsuper FROM pg_roles"
        " WHERE rolname IN ('rds_iam', 'rds_superuser') ORDER BY rolname",
    ) == [("rds_iam", False, False), ("rds_superuser", False, False)]
    # granted by the master user, through its membership in rds_superuser
    assert query(
        stage.database_url,
        "SELECT member::regrole::text, grantor::regrole::text FROM pg_auth_members"
        " WHERE roleid = 'rds_iam'::regrole AND (inherit_option OR set_option)"
        " ORDER BY member::regrole::text",
    ) == [(APPLICATION_ROLE, "rds_superuser"), (PURGE_ROLE, "rds_superuser")]


def auth_token(
    stage: Rehearsal,
    *,
    user: str = APPLICATION_ROLE,
    port: int | None = None,
    region: str = REGION,
    secret_key: str | None = None,
    function: str = "FunctionsInitiator",
) -> str:
    """An IAM authentication token for the instance's endpoint, as boto3 signs it with
    the credentials the Lambda runtime gives ``function`` (or another secret key)."""
    credentials = stage.credentials(function)
    rds = boto3.client(
        "rds",
        region_name=region,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=secret_key or credentials.secret_key,
        aws_session_token=credentials.token,
    )
    port = port or stage.endpoint.port
    return str(
        rds.generate_db_auth_token(
            DBHostname="127.0.0.1", Port=port, DBUsername=user, Region=region
        )
    )


def test_the_application_role_signs_in_by_iam_token_only(
    stage: Rehearsal, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage.invoke("FunctionsMigrateLauncher", {})
    # GIVEN a database function's settings, read from its template environment, and the
    # credentials the Lambda runtime gives it
    credentials = stage.credentials("FunctionsInitiator")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials.token)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    environment = stage.function("FunctionsInitiator").spec.environment
    settings = database_settings({**environment, "AWS_REGION": REGION})

    # WHEN it connects as the functions do (a token signed for the connection), THEN it is in
    with closing(connect(settings)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == (APPLICATION_ROLE,)
    assert stage.endpoint.iam_sign_ins[-1] == APPLICATION_ROLE

    # WHEN it offers anything but a token of its own for this endpoint, THEN it is refused
    offered = {  # what it offers: why the endpoint refuses it
        "not-a-token": "not an IAM authentication token",
        auth_token(stage, user=master_secret(stage)["username"]): "DBUser is",
        auth_token(stage, port=stage.endpoint.port + 1): "signed for 127.0.0.1:",
        auth_token(stage, region="us-east-1"): "credential scope",
        auth_token(stage, secret_key="other"): "the signature does not match",
    }
    for password, why in offered.items():
        with pytest.raises(psycopg2.OperationalError, match="PAM authentication failed"):
            psycopg2.connect(settings.dsn, password=password)
        user, reason = stage.endpoint.iam_refusals[-1]
        assert (user, reason.startswith(why)) == (APPLICATION_ROLE, True), reason
    # and a token is good for 15 minutes
    token = auth_token(stage)
    assert stage.endpoint.tokens.refusal(token, APPLICATION_ROLE) is None
    later = datetime.now(UTC) + timedelta(minutes=15)
    assert stage.endpoint.tokens.refusal(token, APPLICATION_ROLE) is None
    assert stage.endpoint.tokens.refusal(token, APPLICATION_ROLE, now=later) == "expired"


def test_the_functions_verify_the_instance_against_the_ca_in_place_of_the_rds_bundle(
    stage: Rehearsal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stage.invoke("FunctionsMigrateLauncher", {})  # (it connected verify-full too)
    # GIVEN every database function connects verify-full, its root certificates where the
    # template names the RDS CA bundle (tests/infra/test_stack.py) the run's CA
    in_vpc = [box.spec.environment for box in stage.sandboxes.values()
              if "DB_HOST" in box.spec.environment]  # fmt: skip
    assert len(in_vpc) == 7  # the initiator, the five database steps and the purge
    for environment in in_vpc:
        assert environment["DB_SSLMODE"] == "verify-full"
        assert environment["DB_SSLROOTCERT"] == str(stage.root_certificates)
    credentials = stage.credentials("FunctionsConfirm")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials.token)
    environment = {**stage.function("FunctionsConfirm").spec.environment, "AWS_REGION": REGION}

    # WHEN one trusts another CA than the instance's certificate is of
    other = ThrowawayCa(tmp_path / "other", "Some other CA")
    settings = database_settings({**environment, "DB_SSLROOTCERT": str(other.certificate)})

    # THEN it cannot connect, and says that TLS verification failed (and no token)
    with pytest.raises(DatabaseError) as raised, UnitOfWork(Database(settings)):
        pass
    message = str(raised.value)
    assert "TLS verification of the server failed: its certificate does not chain" in message
    assert f"sslrootcert={other.certificate}" in message
    assert "X-Amz-Signature" not in message
    # and with the CA the rehearsal gave it, it can
    with UnitOfWork(Database(database_settings(environment))) as work:
        assert work.properties is not None


def test_a_token_signed_by_a_role_without_rds_db_connect_is_refused(stage: Rehearsal) -> None:
    stage.invoke("FunctionsMigrateLauncher", {})
    # GIVEN a function whose role may not connect to the database (the status-callback
    # receiver, outside the VPC), and one whose role may (the initiator)
    refused = auth_token(stage, function="FunctionsCallStatusReceiver")
    admitted = auth_token(stage)
    dsn = make_dsn(
        host="127.0.0.1",
        port=stage.endpoint.port,
        dbname=stage.database_name,
        user=APPLICATION_ROLE,
        sslmode="require",
    )

    # WHEN each signs in with a token it signed, THEN the first is refused as RDS
    # refuses it, for what IAM says of its role
    with pytest.raises(psycopg2.OperationalError, match="PAM authentication failed"):
        psycopg2.connect(dsn, password=refused)
    user, reason = stage.endpoint.iam_refusals[-1]
    assert user == APPLICATION_ROLE
    assert reason.startswith(
        "User: arn:aws:sts::123456789012:assumed-role/FunctionsCallStatusReceiver"
    )
    assert reason.endswith(
        " is not authorized to perform: rds-db:connect on resource: arn:aws:rds-db:eu-central-1:"
        f"123456789012:dbuser:{stage.permissions.references['DatabaseInstanceAA8A5FDE.DbiResourceId']}"
        "/escalator_app because no identity-based policy allows the rds-db:connect action"
    )
    psycopg2.connect(dsn, password=admitted).close()
    # (checking the signature alone, the endpoint took both)
    signature_only = dataclasses.replace(stage.endpoint.tokens, authorize=None)
    assert signature_only.refusal(refused, APPLICATION_ROLE) is None


def test_escalator_verify_finds_what_it_acts_on_in_the_rehearsed_deployment(
    stage: Rehearsal,
) -> None:
    # GIVEN the rehearsal's endpoint, as the upgrade rehearsal verifies each deploy
    def client(service: str) -> Any:
        return stage.session.client(service, endpoint_url=stage.endpoint_url)

    # WHEN verify looks for the deployment there
    found = deployment_at_endpoint(
        sqs=client("sqs"), lambda_client=client("lambda"), endpoint=stage.endpoint_url
    )

    # THEN it finds the request queue, where the console notifier logs, and the near-due
    # horizon of the initiator's lookahead as the template sets it
    initiator = stage.function("FunctionsInitiator").spec
    assert found == Deployment(
        queue_url=request_queue(stage),
        log_group=default_log_group(stage.function("FunctionsNotifierConsole").spec.logical_id),
        near_due_horizon=near_due_horizon(int(initiator.environment["LOOKAHEAD_SECONDS"])),
    )
    # (read from the initiator's configuration: the environment it runs with, as on AWS)
    configuration = client("lambda").get_function_configuration(FunctionName=initiator.logical_id)
    assert configuration["Environment"]["Variables"] == initiator.environment


def test_each_function_process_calls_aws_as_its_own_role(stage: Rehearsal) -> None:
    # GIVEN the credentials the Lambda runtime gave two notifiers' processes
    (twilio,) = [arn for name, arn in stage.secret_arns.items() if name.startswith("Twilio")]

    def read(function: str) -> str:
        client = stage.client_as(function, "secretsmanager")
        try:
            client.get_secret_value(SecretId=twilio)
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        return "read"

    # WHEN each reads Twilio's secret, THEN only the phone notifier's role may
    assert read("FunctionsNotifierPhone") == "read"
    assert read("FunctionsNotifierConsole") == "AccessDeniedException"


def test_each_function_reads_the_secrets_its_environment_names_as_its_role(
    stage: Rehearsal,
) -> None:
    # GIVEN every function whose template environment names a secret (it reads it at its
    # cold start: escalator.config.read_secret), with what the Lambda runtime gave it
    readers = {
        (name, variable): arn
        for name, sandbox in stage.sandboxes.items()
        for variable, arn in sandbox.spec.environment.items()
        if variable.endswith("_SECRET_ARN")
    }
    # (the receiver and the phone and SMS notifiers Twilio's, the e-mail and PubNub
    # notifiers their own, the launcher the database's master secret)
    assert len(readers) == 6

    # WHEN each reads its secret as it does (GetSecretValue, signed as its role)
    def refused(name: str, arn: str) -> str | None:
        try:
            stage.client_as(name, "secretsmanager").get_secret_value(SecretId=arn)
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        return None

    # THEN its role lets it (a role without it would fail that function's cold start)
    assert {key: refused(key[0], arn) for key, arn in readers.items()} == dict.fromkeys(readers)


def test_every_secret_a_function_reads_is_one_its_role_may_read() -> None:
    template = synthesized_template()
    policies = resources(template, "AWS::IAM::Policy")
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        properties = function["Properties"]
        if not str(properties.get("Handler", "")).startswith("escalator."):
            continue
        role = properties["Role"]["Fn::GetAtt"][0]
        allowed = [
            statement
            for policy in policies.values()
            if {"Ref": role} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if statement["Effect"] == "Allow"
            and "secretsmanager:GetSecretValue" in _list(statement["Action"])
        ]
        for variable, value in properties["Environment"]["Variables"].items():
            if variable.endswith("_SECRET_ARN"):
                assert any(value in _list(statement["Resource"]) for statement in allowed), (
                    f"{logical_id} reads {variable} but its role may not"
                )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed_resources(template: dict[str, Any], role: str, action: str) -> list[Any]:
    """The resources the role's policies in the template allow ``action`` on."""
    return [
        resource
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow" and action in _list(statement["Action"])
        for resource in _list(statement["Resource"])
    ]


def test_each_state_machine_may_invoke_every_function_it_names_and_start_what_it_starts() -> None:
    template = synthesized_template()
    tick_id, tick = state_machine(template, STANDARD)
    window_id, window = state_machine(template, EXPRESS)
    for machine in (tick, window):
        role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        invocable = allowed_resources(template, role, "lambda:InvokeFunction")
        named = json.dumps(machine["Properties"]["DefinitionString"])
        for logical_id in resources(template, "AWS::Lambda::Function"):
            if f'"{logical_id}"' in named:
                assert {"Fn::GetAtt": [logical_id, "Arn"]} in invocable, logical_id
    # the tick starts itself (the hand-over), and its window synchronously (the way AWS
    # runs an Express child: nothing to describe or stop)
    tick_role = tick["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    started = allowed_resources(template, tick_role, "states:StartExecution")
    name = tick["Properties"]["StateMachineName"]
    (itself,) = started
    assert json.dumps(itself).endswith(f':stateMachine:{name}"]]}}')
    assert allowed_resources(template, tick_role, "states:StartSyncExecution") == [
        {"Ref": window_id}
    ]
    assert allowed_resources(template, tick_role, "states:DescribeExecution") == []
    # the window starts nothing
    window_role = window["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    assert allowed_resources(template, window_role, "states:StartExecution") == []
    # the schedule starts the tick only; the initiator starts the window only
    _, schedule = tick_schedule(template)
    scheduler_role = schedule["Properties"]["Target"]["RoleArn"]["Fn::GetAtt"][0]
    assert allowed_resources(template, scheduler_role, "states:StartExecution") == [
        {"Ref": tick_id}
    ]
    ((initiator_id, initiator),) = [
        (logical_id, function)
        for logical_id, function in resources(template, "AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] == "escalator.handlers.initiator.handler"
    ]
    initiator_role = initiator["Properties"]["Role"]["Fn::GetAtt"][0]
    assert allowed_resources(template, initiator_role, "states:StartExecution") == [
        {"Ref": window_id}
    ], initiator_id


def test_the_purge_runs_as_its_schedule_invokes_it_and_signs_in_as_its_own_role(
    stage: Rehearsal, peers: Peers
) -> None:
    stage.invoke("FunctionsMigrateLauncher", {})
    # GIVEN a process that finished longer ago than the retention period, and one that is
    # still active
    with closing(psycopg2.connect(stage.database_url)) as connection, connection.cursor() as cursor:
        finished = insert_process(cursor, "restaurant-old", ProcessState.COMPLETED)
        insert_notification(cursor, finished, 0, NotificationState.SENT)
        cursor.execute(
            "UPDATE process SET started_at = now() - interval '40 days',"
            " ended_at = now() - interval '40 days' WHERE id = %s",
            (finished,),
        )
        insert_process(cursor, "restaurant-active")
        connection.commit()
    # WHEN its schedule fires: EventBridge Scheduler invokes the function, as the
    # schedule's role, with the target's input
    template = synthesized_with(pubnub_origin=peers.pubnub.url)
    purge_id = stage.function("FunctionsPurge").spec.logical_id
    schedule_id, schedule = schedule_of(template, purge_id)
    target = schedule["Properties"]["Target"]
    scheduler = stage.session.client(
        "lambda",
        endpoint_url=stage.endpoint_url,
        **stage.permissions.signing(
            stage.permissions.credentials(
                stage.permissions.role_arn(target["RoleArn"]), schedule_id
            )
        ),
    )
    answer = scheduler.invoke(FunctionName=purge_id, Payload=target["Input"].encode())

    # THEN the finished process went, the active one stayed, signed in as the purge's role
    assert "FunctionError" not in answer, answer["Payload"].read()
    purged = json.loads(answer["Payload"].read())
    assert (purged["processes"], purged["notifications"], purged["complete"]) == (1, 1, True)
    remaining = {row[0] for row in query(stage.database_url, "SELECT process_id FROM process")}
    assert "restaurant-active" in remaining
    assert "restaurant-old" not in remaining
    assert stage.endpoint.iam_sign_ins[-1] == PURGE_ROLE
    # AND nobody else may start it: the tick's schedule's role may not
    _, tick = tick_schedule(template)
    other = stage.session.client(
        "lambda",
        endpoint_url=stage.endpoint_url,
        **stage.permissions.signing(
            stage.permissions.credentials(
                stage.permissions.role_arn(tick["Properties"]["Target"]["RoleArn"]), "tick"
            )
        ),
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        other.invoke(FunctionName=purge_id, Payload=b"{}")
