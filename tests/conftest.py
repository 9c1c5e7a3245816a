"""Fixtures shared by every test: a real PostgreSQL, event factories, a Lambda context,
and one synthesized template for the whole session (all xdist workers, and the local
stacks the tests start)."""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import fcntl
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from psycopg2.extensions import parse_dsn

from devstack.emulation import thread_metrics
from devstack.emulation.events import lambda_context as make_lambda_context
from devstack.emulation.events import sqs_event, sqs_record
from devstack.emulation.template import TEMPLATE_FILE_VARIABLE, given_template_file
from devstack.peers.postgres import PRISTINE_CLUSTER_VARIABLE, PostgresServer, postgres_server
from devstack.peers.tls import LocalTls, serving_tls
from devstack.rehearsal.release import reservation as release_reservation
from escalator import bootstrap
from escalator.logs import logger
from escalator.metrics import metrics as function_metrics
from tests.support.contexts import CUSTOM_CONTEXT
from tests.support.pipeline import pipeline  # noqa: F401 - the fixture, for every test
from tests.support.steps import steps  # noqa: F401 - the fixture, for every test

_TEMPLATE_DIRECTORY = pytest.StashKey[str]()
_CLUSTER_DIRECTORY = pytest.StashKey[str]()
_SYNTHESIS = pytest.StashKey["subprocess.Popen[bytes]"]()
_BACKSTOP_STDERR = pytest.StashKey[int]()
_IMPORTED_BY_COLLECTION = pytest.StashKey[str]()

# How long after its time limit (pyproject.toml: timeout) a test that is still running
# ends its process. Only a test SIGALRM cannot reach is still running then: its main
# thread blocked in C (psycopg2 waiting on the server, a lock), where the signal's
# handler never runs. faulthandler's watchdog is a C thread: it writes every thread's
# stack and exits, so the run fails (under xdist: "worker crashed") instead of stalling.
BACKSTOP_SECONDS = 30


def pytest_configure(config: pytest.Config) -> None:
    """Keep a descriptor of the real stderr for the backstop (capturing replaces fd 2
    while a test runs). Then name the file the session's template is synthesized into,
    once, by whichever process needs it first. The controller names it; xdist workers
    inherit it. With ``ESCALATOR_TEMPLATE_FILE`` set, the session runs that template
    instead (devstack.mutation.least_privilege gives each of its sessions one), and nothing is
    synthesized."""
    assert sys.__stderr__ is not None
    config.stash[_BACKSTOP_STDERR] = os.dup(sys.__stderr__.fileno())
    if hasattr(config, "workerinput"):
        atexit.register(_exit_without_finalizing)  # (registered first: runs last)
        return
    if PRISTINE_CLUSTER_VARIABLE not in os.environ:
        # (every embedded server of the session, the local stacks' too, copies one cluster)
        cluster = tempfile.mkdtemp(prefix="escalator-cluster-")
        config.stash[_CLUSTER_DIRECTORY] = cluster
        os.environ[PRISTINE_CLUSTER_VARIABLE] = str(Path(cluster) / "pgdata")
    if given_template_file() is not None:
        return  # every process reads the template given (devstack.emulation.template), as it is
    if config.option.collectonly:
        return  # (make install collects the suite: no test runs, nothing is synthesized)
    directory = tempfile.mkdtemp(prefix="escalator-template-")
    config.stash[_TEMPLATE_DIRECTORY] = directory
    os.environ[TEMPLATE_FILE_VARIABLE] = str(Path(directory) / "template.json")
    # Synthesizing takes seconds: a child starts now, while the workers start and
    # collect, and takes the file's lock first; whoever needs the template waits for it.
    # Then it makes the previous release's template for the upgrade rehearsal (which
    # waits on the lock of its reservation, taken here and handed to the child), the
    # infra tests' customized one and cdk-nag's findings (a second synthesis in one
    # process costs a tenth of the first).
    script = (
        "import json, os, sys; from devstack.emulation import template as t;"
        " from devstack.rehearsal import release; t.shared_synthesis();"
        " release.synthesize_previous_release(); os.close(int(sys.argv[2]));"
        " t.shared_synthesis(**json.loads(sys.argv[1])); t.shared_nag_findings()"
    )
    reserved = release_reservation()
    assert reserved is not None
    with reserved.open("wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # (its temporary files, its JavaScript runtime's too, are kept in the session's
        # directory, and it runs in a process group of its own: a session that ends
        # before it has finished ends it and its runtime, and removes what they made)
        config.stash[_SYNTHESIS] = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(CUSTOM_CONTEXT), str(lock.fileno())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=[lock.fileno()],
            env={**os.environ, "TMPDIR": directory},
            start_new_session=True,
        )


# What needs the session's template (synthesized for seconds when the session starts).
_TEMPLATE_FIXTURES = {"pipeline", "stage", "local_stack", "template", "states"}
_TEMPLATE_MODULES = {"test_local_stack"}


def _needs_template(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & _TEMPLATE_FIXTURES) or item.path.stem in _TEMPLATE_MODULES


def _weight(item: pytest.Item) -> float:
    """How long a test takes: the seconds its ``long`` mark says (the longest say), a
    second for any other long test, nothing for a short one."""
    mark = item.get_closest_marker("long")
    return 0.0 if mark is None else float(mark.kwargs.get("seconds", 1))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the long tests first, the longest first (the order is otherwise kept): a
    parallel run then ends with short tests on every worker instead of one long test on
    one of them. Among the others, those that do not need the template go first: they
    run while it is made. (xdist hands out the groups, ``xdist_group``, before these.)"""
    items.sort(key=lambda item: (-_weight(item), _needs_template(item)))


# What no worker may import while it collects: the CDK starts its JavaScript runtime when
# it is imported (a second of CPU, in each worker). The tests that use it import it in
# their bodies and share one worker (``xdist_group("cdk")``).
NOT_IMPORTED_BY_COLLECTION = ("aws_cdk",)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note a worker's collection that imported what only a few tests use (a worker
    starts with nothing imported; a process that ran tests before, mutmut's, may have)."""
    if not hasattr(session.config, "workerinput"):
        return
    imported = [name for name in NOT_IMPORTED_BY_COLLECTION if name in sys.modules]
    if imported:
        session.config.stash[_IMPORTED_BY_COLLECTION] = (
            f"collecting the tests imported {', '.join(imported)}: import it in the tests "
            "that use it, and put them in xdist_group('cdk')"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail every test of a worker whose collection imported what it must not (an error
    raised while a worker collects reaches the run only as xdist's internal error)."""
    problem = item.config.stash.get(_IMPORTED_BY_COLLECTION, None)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """Arm the backstop as pytest-timeout arms its timer (returning nothing lets it)."""
    faulthandler.dump_traceback_later(
        settings.timeout + BACKSTOP_SECONDS, exit=True, file=item.config.stash[_BACKSTOP_STDERR]
    )


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    faulthandler.cancel_dump_traceback_later()


def _exit_without_finalizing() -> None:
    """A worker's last word: its results went to the controller long before, and its
    fixtures and exit handlers have run; tearing down the interpreter (every module, the
    emulation's state) takes it most of a second of CPU, and the controller waits for the
    last worker to end. Each worker ends here instead, its output flushed."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(0)


def end_synthesis(config: pytest.Config) -> None:
    """End the session's synthesis process if it still runs, its JavaScript runtime with
    it (its process group); what they made is in the session's template directory."""
    synthesis = config.stash.get(_SYNTHESIS, None)
    if synthesis is not None and synthesis.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(synthesis.pid, signal.SIGKILL)
        synthesis.wait()


def pytest_unconfigure(config: pytest.Config) -> None:
    faulthandler.cancel_dump_traceback_later()
    stderr = config.stash.get(_BACKSTOP_STDERR, None)
    if stderr is not None:
        os.close(stderr)
    end_synthesis(config)
    for key in (_TEMPLATE_DIRECTORY, _CLUSTER_DIRECTORY):
        directory = config.stash.get(key, None)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


# The tests call handlers from threads of their own too (concurrent confirms), outside
# the emulation's sandboxes: each thread's metrics its own, as each sandbox's on Lambda.
thread_metrics.per_thread()

# moto's Step Functions interpreter logs every caught task error with a dump of the
# whole state machine; the execution history tells the same, readably.
logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The PostgreSQL server of this test session (``DATABASE_URL``, or an embedded one)."""
    with postgres_server(tmp_path_factory.mktemp("pgdata")) as server:
        yield server


@pytest.fixture
def database_url(postgres: PostgresServer) -> Iterator[str]:
    """A migrated, empty database of this test's own."""
    with postgres.scratch_database() as name:
        yield postgres.dsn(name)


@pytest.fixture
def application_url(postgres: PostgresServer, database_url: str) -> str:
    """This test's database as the application role connects to it (DML, no DDL)."""
    return postgres.application_dsn(str(parse_dsn(database_url)["dbname"]))


@pytest.fixture
def purger_url(postgres: PostgresServer, database_url: str) -> str:
    """This test's database as the purge's role connects to it (it deletes, nothing else)."""
    return postgres.purger_dsn(str(parse_dsn(database_url)["dbname"]))


@pytest.fixture(scope="session")
def postgres_tls(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTls]:
    """The session's server over TLS, with a certificate of a CA of this session's."""
    with serving_tls(postgres.admin_dsn, tmp_path_factory.mktemp("tls")) as tls:
        yield tls


@pytest.fixture
def tls_application_url(postgres_tls: LocalTls, application_url: str) -> str:
    """This test's database as the functions connect to it on AWS: the application role,
    over TLS, the server verified (``verify-full``) against the session's CA."""
    return postgres_tls.url(application_url)


@pytest.fixture
def empty_database_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = postgres.create_database()
    yield postgres.dsn(name)
    postgres.drop_database(name)


@pytest.fixture(autouse=True)
def cold_start() -> Iterator[None]:
    """Every test starts, and leaves, with nothing wired and no metric waiting to be
    written: as a new cold start would (a service function a test calls without its
    handler counts, and nothing flushes)."""
    bootstrap.reset()
    function_metrics.clear_metrics()
    yield
    bootstrap.reset()
    function_metrics.clear_metrics()


@pytest.fixture
def initiator_env(monkeypatch: pytest.MonkeyPatch, application_url: str) -> str:
    """The initiator's environment pointing at this test's database, as on a cold start,
    connecting as the application role."""
    for name in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", application_url)
    return application_url


@pytest.fixture
def lambda_context() -> LambdaContext:
    return make_lambda_context()


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    """``make_record(document, group=..., message_id=...)``: one SQS FIFO record."""
    return sqs_record


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    """``make_event(record, ...)``: an SQS event of those records."""
    return sqs_event


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """``log_lines()``: the JSON log lines written so far by this test, exactly as emitted."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    handler.setStream(previous)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, so boto3 under moto never finds real ones."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
