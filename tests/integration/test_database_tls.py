"""The database functions connect over TLS and verify the server (``verify-full``), as on
AWS against the RDS CA bundle, here against a throwaway CA of the test session's; a
server they cannot verify fails the connection with a reason naming TLS verification."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg2
import pytest
from psycopg2.extensions import make_dsn, parse_dsn

from devstack.peers.pglink import postgres_link
from devstack.peers.tls import LOCAL_HOST_NAME, LOOPBACK, LocalTls, ThrowawayCa
from escalator.config import DatabaseSettings, database_settings
from escalator.database import Database, UnitOfWork
from escalator.errors import DatabaseError
from escalator.migrations import MigrationError, default_sql_dir, migrate
from tests.support.contract_cases import pubnub, start
from tests.support.pipeline import Pipeline

NOT_VERIFIED = "TLS verification of the server failed"


def the_functions_settings(url: str) -> DatabaseSettings:
    """What a function reads from its environment: ``url`` as its ``DATABASE_URL``."""
    return database_settings({"DATABASE_URL": url})


def connection_failure(url: str) -> str:
    """The error a function's unit of work raises when it cannot connect with ``url``."""
    with pytest.raises(DatabaseError) as raised, UnitOfWork(Database(the_functions_settings(url))):
        pass
    return str(raised.value)


@pytest.fixture
def other_ca(tmp_path: Path) -> ThrowawayCa:
    """A CA the server's certificate is not of."""
    return ThrowawayCa(tmp_path / "other", "Some other CA")


def test_verify_full_against_the_servers_ca_connects_over_tls(
    postgres_tls: LocalTls, tls_application_url: str
) -> None:
    options = parse_dsn(tls_application_url)
    assert (options["sslmode"], options["host"]) == ("verify-full", LOCAL_HOST_NAME)

    database = Database(the_functions_settings(tls_application_url))
    with UnitOfWork(database) as work:
        assert work.properties is not None
    connection = database.connection()
    assert connection.info.ssl_in_use
    assert connection.info.ssl_attribute("protocol") in ("TLSv1.2", "TLSv1.3")


def test_a_server_whose_certificate_is_of_another_ca_is_refused_by_name(
    postgres_tls: LocalTls, tls_application_url: str, other_ca: ThrowawayCa
) -> None:
    # GIVEN the functions' root certificates are another CA's
    url = make_dsn(tls_application_url, sslrootcert=str(other_ca.certificate))

    message = connection_failure(url)

    # THEN the failure says TLS verification failed and why, and names the CA file
    assert message.startswith(
        f"cannot connect to the database: {NOT_VERIFIED}: its certificate does not chain to"
        f" a root certificate given (sslmode=verify-full, sslrootcert={other_ca.certificate})"
    )
    assert "certificate verify failed" in message
    assert str(parse_dsn(url)["password"]) not in message


def test_a_certificate_for_another_host_is_refused_by_name(
    postgres_tls: LocalTls, tls_application_url: str
) -> None:
    # GIVEN the functions connect to an address the certificate does not name
    options = parse_dsn(tls_application_url)
    del options["hostaddr"]
    url = make_dsn(**{**options, "host": LOOPBACK})

    message = connection_failure(url)

    assert f"{NOT_VERIFIED}: its certificate does not name the host connected to" in message
    assert f'does not match host name "{LOOPBACK}"' in message


def test_a_server_without_tls_is_refused_by_name(
    application_url: str, postgres_tls: LocalTls
) -> None:
    # GIVEN a path to the server on which it offers no TLS (this build has none)
    with postgres_link(application_url) as plain:
        url = make_dsn(
            plain.dsn, sslmode="verify-full", sslrootcert=str(postgres_tls.authority.certificate)
        )

        message = connection_failure(url)

    assert f"{NOT_VERIFIED}: the server does not offer TLS" in message


def test_the_migration_says_the_same(
    postgres_tls: LocalTls, tls_application_url: str, other_ca: ThrowawayCa
) -> None:
    url = make_dsn(tls_application_url, sslrootcert=str(other_ca.certificate))

    with pytest.raises(MigrationError, match=f"{NOT_VERIFIED}: its certificate does not chain"):
        migrate(url, default_sql_dir())


def test_the_front_refuses_a_client_that_does_not_ask_for_tls(
    postgres_tls: LocalTls, tls_application_url: str
) -> None:
    refused = postgres_tls.front.refused
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(make_dsn(tls_application_url, sslmode="disable"))
    assert postgres_tls.front.refused == refused + 1


def test_the_pipelines_functions_connect_over_tls_verified(
    pipeline: Pipeline, postgres_tls: LocalTls
) -> None:
    # GIVEN the pipeline's functions, configured as they are for every pipeline test
    options = parse_dsn(os.environ["DATABASE_URL"])
    assert (options["sslmode"], options["sslrootcert"]) == (
        "verify-full",
        str(postgres_tls.authority.certificate),
    )
    admitted = postgres_tls.front.admitted

    # WHEN the initiator applies a request
    pipeline.submit(start("restaurant-1", pubnub("ch-1", at=int(time.time()) + 3600)))

    # THEN it connected through the TLS front, and the request is applied
    assert postgres_tls.front.admitted > admitted
    assert [row[1] for row in pipeline.notification_states()] == ["pending"]
