"""Fixtures shared by every test: a real PostgreSQL, event factories, a Lambda context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from tests.support.events import lambda_context as make_lambda_context
from tests.support.events import sqs_event, sqs_record
from tests.support.pipeline import pipeline  # noqa: F401 - the fixture, for every test
from tests.support.postgres import PostgresServer, postgres_server

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
    """A fresh, migrated database of this test's own."""
    name = postgres.create_database(template=postgres.template)
    yield postgres.dsn(name)
    postgres.drop_database(name)


@pytest.fixture
def empty_database_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = postgres.create_database()
    yield postgres.dsn(name)
    postgres.drop_database(name)


@pytest.fixture
def initiator_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[str]:
    """The initiator's environment pointing at this test's database, as on a cold start."""
    for name in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    bootstrap.initiator.cache_clear()
    yield database_url
    bootstrap.initiator.cache_clear()


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
