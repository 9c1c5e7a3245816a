"""What runs at deploy and cold start on AWS: the migration trigger and secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from psycopg2.extensions import parse_dsn

from devstack.emulation.events import lambda_context
from devstack.peers.postgres import query
from escalator.channels import phone
from escalator.config import database_settings, load_migration_config
from escalator.errors import ConfigError
from escalator.handlers import migrate
from escalator.migrations import MigrationError, default_sql_dir, discover

REGISTRY = {"default": "+12025550123", "+385": "+38512345678"}


def test_migration_trigger_applies_the_schema_and_stores_the_caller_ids(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    monkeypatch.setenv("CALLER_ID_REGISTRY", json.dumps(REGISTRY))

    first = migrate.handler({}, lambda_context())
    second = migrate.handler({}, lambda_context())

    every_file = [migration.filename for migration in discover(default_sql_dir())]
    assert len(every_file) >= 2
    assert first == {"applied": every_file, "caller_ids_stored": True}
    assert second == {"applied": [], "caller_ids_stored": True}
    rows = query(
        empty_database_url,
        "SELECT property_value FROM property WHERE property_key = 'caller-id-registry'",
    )
    assert [json.loads(value) for (value,) in rows] == [REGISTRY]


def test_migration_trigger_fails_loudly_without_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    monkeypatch.delenv("CALLER_ID_REGISTRY", raising=False)
    with pytest.raises(MigrationError, match="cannot connect to the database"):
        migrate.handler({}, lambda_context())


@pytest.mark.parametrize(
    ("registry", "problem"),
    [("{", "not valid JSON"), ('{"+385": 7}', "must be a JSON object of prefix to caller id")],
)
def test_a_malformed_caller_id_registry_is_refused(registry: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_migration_config({"DATABASE_URL": "postgresql:///x", "CALLER_ID_REGISTRY": registry})


@pytest.fixture
def secrets(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-central-1")


def test_database_credentials_come_from_the_rds_secret(secrets: Any) -> None:
    # The keys RDS writes: the generated username and password, then what the secret
    # attachment adds. Never the database's name: the stack gives that as DB_NAME.
    arn = secrets.create_secret(
        Name="escalator-db",
        SecretString=json.dumps(
            {
                "username": "escalator",
                "password": "s3cret",
                "engine": "postgres",
                "host": "db.internal",
                "port": 5432,
                "dbInstanceIdentifier": "escalator-db",
            }
        ),
    )["ARN"]

    settings = database_settings(
        {"DB_SECRET_ARN": arn, "DB_NAME": "escalator", "DB_SSLMODE": "require"}
    )

    parsed = parse_dsn(settings.dsn)
    assert settings.password is not None
    assert (parsed["host"], parsed["dbname"], parsed["user"], settings.password()) == (
        "db.internal",
        "escalator",
        "escalator",
        "s3cret",
    )
    assert parsed["sslmode"] == "require"
    assert "s3cret" not in repr(settings)


def test_provider_credentials_come_from_their_secret(secrets: Any) -> None:
    arn = secrets.create_secret(
        Name="escalator-twilio",
        SecretString=json.dumps({"account_sid": "AC123", "auth_token": "token"}),
    )["ARN"]

    settings = phone.load_settings({"TWILIO_SECRET_ARN": arn, "TWILIO_URL": "https://x/twiml"})

    assert (settings.account_sid, settings.auth_token) == ("AC123", "token")


def test_a_secret_still_holding_its_placeholder_is_refused(secrets: Any) -> None:
    arn = secrets.create_secret(
        Name="escalator-twilio",
        SecretString=json.dumps({"account_sid": "set-me", "auth_token": "generated"}),
    )["ARN"]

    with pytest.raises(ConfigError, match="still holds the placeholder for account_sid"):
        phone.load_settings({"TWILIO_SECRET_ARN": arn, "TWILIO_URL": "https://x/twiml"})


def test_an_unreadable_secret_is_named(secrets: Any) -> None:
    missing = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:nothing-AbCdEf"
    with pytest.raises(ConfigError, match="cannot read secret arn:aws:secretsmanager"):
        database_settings({"DB_SECRET_ARN": missing})
