"""``escalator local``: the whole system on one machine.

A moto server is the AWS endpoint (so the AWS CLI and boto3 work against it), with the
FIFO request queue and the state machine synthesized from the CDK app, whose Lambda
tasks run the real handlers in this process. PostgreSQL is the one given, or an
embedded one kept under the data directory and served over TLS with a certificate of a
CA made for the run, which the functions verify (``verify-full``, as against RDS on AWS;
the ready line's ``database_url`` says so). An execution starts every tick; the queue is
fed to the initiator as Lambda's event source mapping would. Providers without
credentials get dry-run transports; every delivery goes to the outbox. A provider whose
settings are in the environment is reached for real (``TWILIO_API_BASE_URL`` may point
at a stub), and Twilio's status callbacks are served at ``twilio_status_callback_url``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg2.extensions import make_dsn

from devstack.emulation.schedule import Schedule
from devstack.emulation.template import (
    REGION,
    TemplateError,
    delivery_timeouts,
    load_template,
    resources,
)
from devstack.peers.postgres import (
    PostgresKeeper,
    allow_application_login,
    embedded_postgres_server,
)
from devstack.peers.tls import serving_tls
from escalator import bootstrap
from escalator.channels import CHANNELS, email, phone
from escalator.config import DatabaseSettings, Env
from escalator.database import Database, UnitOfWork
from escalator.errors import ConfigError
from escalator.limits import claim_lookahead
from escalator.logs import logger
from escalator.migrations import APPLICATION_ROLE, default_sql_dir, migrate
from escalator.service import store_caller_id_registry
from infra.timings import Leases, minimum_leases


@dataclass(frozen=True)
class LocalOptions:
    """What ``escalator local`` is told; these defaults are its command line's."""

    port: int = 4566
    tick: int = 60
    database_url: str | None = None
    data_dir: Path = Path(".escalator-local")
    caller_id_registry: Path | None = None
    outbox: Path = Path("escalator-outbox.jsonl")
    # The share of Lambda invocations throttled before they run, and the share whose
    # answer is lost after they ran (as AWS does now and then); a seed to replay them.
    lambda_faults: float = 0.0
    fault_seed: int | None = None
    # Ticks fire at a random moment within each period, as EventBridge Scheduler's do
    # (``schedule_seed`` replays them); ``exact_schedule``: at each period's start.
    exact_schedule: bool = False
    schedule_seed: int | None = None
    # The synthesized template to run (``cdk synth``'s file): what is about to be
    # deployed; without it, the CDK app is synthesized now.
    template: Path | None = None


def say(message: str) -> None:
    """Progress for the operator, on stderr (stdout carries only the ready line)."""
    print(f"escalator local: {message}", file=sys.stderr, flush=True)


@contextmanager
def moto_server(port: int) -> Iterator[str]:
    """moto as a real HTTP endpoint on 127.0.0.1, executing state machines."""
    from moto.core.config import default_user_config
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    # moto's Step Functions interpreter calls Lambda through this port.
    os.environ["MOTO_PORT"] = str(port)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def prepare_database(url: str, registry_file: Path | None) -> str:
    """Migrate, and store the caller-id registry given as a file, as administrator;
    return the application role's URL, which the functions connect with."""
    migrate(url, default_sql_dir(), progress=say)
    application_url = make_dsn(url, user=APPLICATION_ROLE, password=allow_application_login(url))
    if registry_file is not None:
        text = registry_file.read_text(encoding="utf-8")
        registry = json.loads(text)
        if not isinstance(registry, dict):
            raise ConfigError(f"{registry_file} must hold a JSON object of prefix to caller id")
        database = Database(DatabaseSettings(dsn=url))
        store_caller_id_registry(UnitOfWork(database), json.dumps(registry))
    return application_url


def local_defaults(tick: int, template: dict[str, Any]) -> dict[str, str]:
    """The delivery settings the local stack uses unless the environment says otherwise:
    claims and leases scaled to its schedule, so a restart picks up quickly, but never
    shorter than the stack on AWS's rule asks (``infra.timings``) for the function
    timeouts, retry budgets and window timeout of the template it runs."""
    lookahead = claim_lookahead(tick)
    minimum = minimum_leases(lookahead_seconds=lookahead, **delivery_timeouts(template))
    leases = Leases(claim_grace_seconds=2 * tick, sending_lease_seconds=4 * tick).at_least(minimum)
    return {
        Env.LOOKAHEAD_SECONDS: str(lookahead),
        Env.CLAIM_GRACE_SECONDS: str(leases.claim_grace_seconds),
        Env.SENDING_LEASE_SECONDS: str(leases.sending_lease_seconds),
    }


def dry_run_details() -> dict[str, dict[str, str]]:
    """What a dry-run delivery reports per channel, from the same variables (and the same
    defaults) as the real notifiers."""
    subject = os.environ.get(email.MAIL_SUBJECT) or email.SmtpSettings.subject
    url = os.environ.get(phone.TWILIO_URL) or f"(dry run: {phone.TWILIO_URL} is not set)"
    return {"phone": {"url": url}, "email": {"subject": subject}}


def install_outbox(outbox: Path) -> dict[str, bool]:
    """Wrap every channel's notifier with the outbox; dry run where it has no credentials."""
    from devstack.local.outbox import DryRun, OutboxNotifier

    details = dry_run_details()
    notifiers = bootstrap.notifiers()
    dry: dict[str, bool] = {}
    for name, channel in CHANNELS.items():
        try:
            inner: Any = channel.notifier()
            dry[name] = False
        except ConfigError:
            inner = DryRun(name, details.get(name, {}))
            dry[name] = True
        notifiers.overrides[name] = OutboxNotifier(inner, outbox, dry_run=dry[name])
    return dry


def create_queues(sqs: Any, template: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """The request queue and its dead-letter queue as the template defines them (FIFO,
    no content-based deduplication, visibility timeout, redrive policy): their URLs, and
    what each queue's ``Ref`` and ``Fn::GetAtt`` stand for (``deploy``'s references)."""
    from devstack.emulation.sqs import queues_from_template

    def name(logical_id: str) -> str:
        return "escalator-dead-letters" if "DeadLetters" in logical_id else "escalator-requests"

    queues = queues_from_template(
        template,
        sqs,
        {logical_id: name(logical_id) for logical_id in resources(template, "AWS::SQS::Queue")},
    )
    urls = {name(logical_id): queue.url for logical_id, queue in queues.items()}
    references = {logical_id: queue.url for logical_id, queue in queues.items()}
    references |= {f"{logical_id}.Arn": queue.arn for logical_id, queue in queues.items()}
    return urls["escalator-requests"], urls["escalator-dead-letters"], references


def run(options: LocalOptions) -> int:
    """Run until SIGINT or SIGTERM; return the exit status."""
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    # (the template first: a wrong path fails before anything starts, and the delivery
    # settings are scaled to its timeouts)
    template = _template(options)
    _local_environment(options, template)
    with ExitStack() as stack:
        database = _database(stack, options, stop)
        aws = _aws(stack, options, template)
        dry = install_outbox(options.outbox)
        say(
            "dry run for "
            + (", ".join(name for name, is_dry in dry.items() if is_dry) or "no channel")
        )
        ready = {
            "endpoint_url": aws.endpoint,
            "region": REGION,
            "queue_url": aws.queue_url,
            "state_machine_arn": aws.machine.arn,
            "database_url": database.url,
            "outbox": str(options.outbox.resolve()),
            "twilio_status_callback_url": aws.callbacks_url,
        }
        print(json.dumps(ready), flush=True)
        quiet_stdout()
        schedule = Schedule(options.tick, seed=options.schedule_seed, exact=options.exact_schedule)
        say(f"schedule: {schedule.describe()}")
        executions = _serve(aws, schedule, stop)
        say(f"stopped after {executions} executions, {len(aws.lambdas.invocations)} invocations")
        say(f"Lambda faults injected: {aws.lambdas.faults.summary()}")
        timed_out = ", ".join(f"{name} {n}" for name, n in aws.lambdas.timed_out.items())
        say(f"invocations that ran out of time: {timed_out or 'none'}")
        if database.keeper is not None:
            say(f"PostgreSQL restarts: {database.keeper.restarts}")
    return 0


# Synthesizes the template (devstack.emulation.template.synthesized_template) and prints it.
_SYNTHESIS = (
    "import json, sys; from devstack.emulation.template import synthesized_template;"
    " json.dump(synthesized_template(), sys.stdout)"
)


def _template(options: LocalOptions) -> dict[str, Any]:
    """The template given as a file, or the CDK app synthesized now, in a process of its
    own: the CDK's kernel (a Node.js process) would otherwise live as long as the stack,
    and die with it on Ctrl-C before the stack's own exit, which then fails to stop it."""
    if options.template is not None:
        return load_template(options.template)
    say("synthesizing the CDK app")
    synthesis = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", _SYNTHESIS], capture_output=True, text=True, check=False
    )
    if synthesis.returncode != 0:
        last = (synthesis.stderr.strip().splitlines() or ["no message"])[-1]
        raise TemplateError(f"the CDK app did not synthesize: {last}")
    template: dict[str, Any] = json.loads(synthesis.stdout)
    return template


def _local_environment(options: LocalOptions, template: dict[str, Any]) -> None:
    """Logs to stderr; local credentials, the region and the delivery settings scaled to
    the tick and the template's timeouts, unless the environment says otherwise."""
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        **local_defaults(options.tick, template),
    }.items():
        os.environ.setdefault(name, value)


@dataclass(frozen=True)
class _LocalDatabase:
    url: str  # the application role's (over TLS, verified, for the embedded server)
    keeper: PostgresKeeper | None  # restarts the embedded server (none for --database-url)


def _database(stack: ExitStack, options: LocalOptions, stop: threading.Event) -> _LocalDatabase:
    """PostgreSQL (the given one, or an embedded one kept alive), migrated; the
    functions connect as the application role. The embedded one is served over TLS with
    a certificate of a CA made for this run (under the data directory), which the
    functions verify as they verify RDS on AWS (``verify-full``)."""
    say("starting PostgreSQL")
    if options.database_url is not None:
        url = prepare_database(options.database_url, options.caller_id_registry)
        return _functions_connect(url, None)
    server = stack.enter_context(embedded_postgres_server(options.data_dir / "postgres"))
    admin_url = str(server.get_uri())
    keeper = PostgresKeeper(server, stop, say)
    keeper.start()
    tls = stack.enter_context(serving_tls(admin_url, options.data_dir / "tls"))
    say(f"PostgreSQL over TLS on port {tls.front.port}, its CA {tls.authority.certificate}")
    url = tls.url(prepare_database(admin_url, options.caller_id_registry))
    return _functions_connect(url, keeper)


def _functions_connect(url: str, keeper: PostgresKeeper | None) -> _LocalDatabase:
    os.environ[Env.DATABASE_URL] = url
    bootstrap.reset()
    return _LocalDatabase(url, keeper)


@dataclass(frozen=True)
class _LocalAws:
    endpoint: str
    lambdas: Any  # devstack.emulation.moto_services.sandboxes.InProcessLambdas
    sqs: Any
    queue_url: str
    dead_letter_queue_url: str
    machine: Any  # devstack.emulation.stepfunctions.DeployedStateMachine
    callbacks_url: str
    session: Any  # the boto3 session the stack was deployed with


def _aws(stack: ExitStack, options: LocalOptions, template: dict[str, Any]) -> _LocalAws:
    """The moto server with the template's queues, functions (in-process, with the
    faults asked for) and state machine, and the status-callback function URL."""
    import boto3

    from devstack.emulation.function_url import FunctionUrl
    from devstack.emulation.moto_adapter import lambdas_in_process
    from devstack.emulation.moto_services.sandboxes import LambdaFaults
    from devstack.emulation.stepfunctions import deploy

    say(f"starting the AWS endpoint on port {options.port}")
    endpoint = stack.enter_context(moto_server(options.port))
    # What the functions call of AWS (the receiver invokes the recorder) is this endpoint.
    os.environ.setdefault("AWS_ENDPOINT_URL", endpoint)
    lambdas = stack.enter_context(lambdas_in_process())
    lambdas.faults = LambdaFaults(options.lambda_faults, seed=options.fault_seed)
    if options.lambda_faults:
        say(
            f"injecting Lambda faults: {options.lambda_faults:.0%} of invocations throttled,"
            f" {options.lambda_faults:.0%} of answers lost (seed {options.fault_seed})"
        )
    session = boto3.Session(region_name=REGION)
    sqs = session.client("sqs", endpoint_url=endpoint)
    say(f"registering the state machines of {options.template or 'the CDK app'}")
    queue_url, dead_letter_queue_url, references = create_queues(sqs, template)
    # Every function, state machine, the schedule and the event source act with their
    # template roles, and moto authorizes each call against them (devstack.emulation.iam).
    machine = deploy(
        session, template, endpoint_url=endpoint, lambdas=lambdas, references=references
    )
    # The providers' status callbacks, at the receiver's function URL on loopback (a public
    # URL of your own, e.g. a tunnel to it, may be given as TWILIO_STATUS_CALLBACK_URL).
    receiver = machine.function_named("FunctionsCallStatusReceiver")
    callbacks = stack.enter_context(
        FunctionUrl(
            session.client("lambda", endpoint_url=endpoint),
            receiver,
            refusal=functools.partial(lambdas.permissions.function_url_refusal, receiver),
        )
    )
    for channel in CHANNELS.values():
        if channel.callbacks is not None:
            os.environ.setdefault(channel.callbacks.url_variable, callbacks.url)
    os.environ[Env.CALL_STATUS_FUNCTION] = machine.function_named("FunctionsCallStatusRecorder")
    # Near-due arrivals: the initiator starts their delivery window at once.
    os.environ[Env.DELIVERY_WINDOW_ARN] = machine.window_arn
    bootstrap.reset()
    publish_environments(session.client("lambda", endpoint_url=endpoint), template, machine)
    return _LocalAws(
        endpoint, lambdas, sqs, queue_url, dead_letter_queue_url, machine, callbacks.url, session
    )


def publish_environments(lambda_client: Any, template: dict[str, Any], machine: Any) -> None:
    """Each function's configuration at the endpoint shows the settings it runs with
    here (GetFunctionConfiguration's ``Environment``, as on AWS: ``escalator verify``
    reads the initiator's lookahead there): of the variables the template gives it, those
    this process sets (the functions run in it). The rest (the database's address, its
    secrets) stand for what runs differently here, and stay out."""
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        names = function["Properties"].get("Environment", {}).get("Variables", {})
        variables = {name: os.environ[name] for name in names if name in os.environ}
        if variables:
            lambda_client.update_function_configuration(
                FunctionName=machine.functions[logical_id],
                Environment={"Variables": variables},
            )


def _serve(aws: _LocalAws, schedule: Schedule, stop: threading.Event) -> int:
    """Feed the queue to the initiator and start a tick as ``schedule`` fires until
    ``stop``; then stop what still runs. How many ticks were started."""
    tick = int(schedule.period)
    from devstack.emulation.context import LocalContext
    from devstack.emulation.sqs import EventSource
    from escalator.handlers import initiator

    # Lambda polls the queue with the initiator's execution role, and invokes it (its
    # calls to AWS made as that role too); SQS moves what is dead-lettered itself.
    function = aws.machine.function_named("FunctionsInitiator")
    poller = aws.sqs
    if aws.lambdas.permissions.enforce:
        role = aws.lambdas.permissions.signing(aws.lambdas.credentials[function])
        poller = aws.session.client("sqs", endpoint_url=aws.endpoint, **role)
    source = EventSource(
        poller,
        aws.queue_url,
        _acting_as(aws.lambdas, function, initiator.handler),
        context=LocalContext(function_name="initiator"),
        # (scaled to the tick; the receive count, the queue's, is the outage budget)
        visibility_timeout=max(5, tick),
        dead_letter_queue_url=aws.dead_letter_queue_url,
        redrive_sqs=aws.sqs,
    )
    polling = threading.Thread(target=source.run, args=(stop,), name="event-source")
    polling.start()
    executions = schedule.run(lambda: _fire(aws.machine, tick), stop)
    say("stopping")
    polling.join(timeout=10)
    _stop_running(aws.machine)
    return executions


def _acting_as(lambdas: Any, function: str, handler: Any) -> Any:
    """``handler``, calling AWS as ``function`` does (its role's credentials)."""

    def as_function(event: Any, context: Any) -> Any:
        with lambdas.acting_as(function):
            return handler(event, context)

    return as_function


def _fire(machine: Any, tick: int) -> None:
    """Start the tick as the schedule does (with its role); a refused start is what
    EventBridge Scheduler counts as a failed invocation and drops (no retries, no
    dead-letter queue): said, and the next tick fires as usual."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        machine.start({"period_seconds": tick})
    except (BotoCoreError, ClientError) as exc:
        say(f"the schedule could not start the tick: {exc}")


def quiet_stdout() -> None:
    """From here on, whatever would go to stdout goes to stderr: the ready line is the
    only thing stdout ever carries (Powertools writes each function's metrics to stdout,
    and a launcher that reads only the ready line would otherwise fill the pipe and
    block every function that logs a metric)."""
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def _stop_running(machine: Any) -> None:
    """Stop executions still running: what they claimed is released after the grace."""
    try:
        running = machine.sfn.list_executions(stateMachineArn=machine.arn, statusFilter="RUNNING")
        for execution in running.get("executions", []):
            machine.sfn.stop_execution(executionArn=execution["executionArn"])
    except Exception as exc:  # shutting down regardless
        say(f"could not stop running executions: {exc}")
    time.sleep(0.2)
