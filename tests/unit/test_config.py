"""Configuration fails fast, naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg2.extensions import parse_dsn

import escalator
from escalator.config import database_settings, load_initiator_config, load_purge_config
from escalator.errors import ConfigError

PACKAGE = Path(escalator.__file__).resolve().parent


def test_database_url_wins_and_its_password_is_given_at_each_connection() -> None:
    settings = database_settings({"DATABASE_URL": "postgresql://u:p@db/escalator", "DB_HOST": "x"})
    assert parse_dsn(settings.dsn) == {"user": "u", "host": "db", "dbname": "escalator"}
    assert settings.password is not None
    assert settings.password() == "p"


def test_db_variables_of_the_original_build_a_dsn() -> None:
    env = {
        "DB_HOST": "db",
        "DB_PORT": "6432",
        "DB_NAME": "esc",
        "DB_USER": "u",
        "DB_PASSWORD": "pw",
    }
    settings = database_settings(env)
    parsed = parse_dsn(settings.dsn)
    assert parsed["host"] == "db"
    assert parsed["port"] == "6432"
    assert parsed["dbname"] == "esc"
    assert "password" not in parsed
    assert settings.password is not None
    assert settings.password() == "pw"
    # TLS verifying the server against the RDS CA bundle shipped in the package
    assert parsed["sslmode"] == "verify-full"
    assert parsed["sslrootcert"] == str(PACKAGE / "certs" / "rds-global-bundle.pem")


DB = {"DB_HOST": "db", "DB_NAME": "esc", "DB_USER": "u", "DB_PASSWORD": "pw"}


def test_the_root_certificates_may_be_named(tmp_path: Path) -> None:
    authority = tmp_path / "ca.crt"
    authority.write_text("a CA's certificate", encoding="utf-8")

    parsed = parse_dsn(database_settings({**DB, "DB_SSLROOTCERT": str(authority)}).dsn)

    assert (parsed["sslmode"], parsed["sslrootcert"]) == ("verify-full", str(authority))


def test_root_certificates_that_are_not_a_file_stop_the_cold_start(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConfigError, match=f"DB_SSLROOTCERT names {missing}, which is not a"):
        database_settings({**DB, "DB_SSLROOTCERT": str(missing)})
    with pytest.raises(ConfigError, match="sslmode=verify-ca verifies"):
        database_settings({**DB, "DB_SSLMODE": "verify-ca", "DB_SSLROOTCERT": str(tmp_path)})


def test_a_mode_that_does_not_verify_names_no_root_certificates() -> None:
    parsed = parse_dsn(database_settings({**DB, "DB_SSLMODE": "require"}).dsn)

    assert parsed["sslmode"] == "require"
    assert "sslrootcert" not in parsed


def test_with_iam_authentication_each_connection_gets_a_freshly_signed_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    env = {
        "DB_IAM_AUTH": "true",
        "DB_HOST": "escalator.abc.eu-central-1.rds.amazonaws.com",
        "DB_NAME": "escalator",
        "DB_USER": "escalator_app",
        "DB_SSLMODE": "require",
        "AWS_REGION": "eu-central-1",
    }
    settings = database_settings(env)
    assert parse_dsn(settings.dsn)["user"] == "escalator_app"
    assert settings.password is not None
    token = settings.password()
    # signed locally: the host, the user and a signature, no secret of the database
    assert token.startswith("escalator.abc.eu-central-1.rds.amazonaws.com:5432/?")
    assert "Action=connect" in token
    assert "DBUser=escalator_app" in token
    assert "X-Amz-Signature=" in token
    assert "X-Amz-Expires=900" in token
    assert "token" not in repr(settings)


def test_iam_authentication_needs_the_region_lambda_gives() -> None:
    env = {"DB_IAM_AUTH": "true", "DB_HOST": "h", "DB_NAME": "n", "DB_USER": "u"}
    with pytest.raises(ConfigError, match="AWS_REGION"):
        database_settings(env)


def test_missing_values_are_named() -> None:
    with pytest.raises(ConfigError, match="DB_NAME, DB_PASSWORD"):
        load_initiator_config({"DB_HOST": "db", "DB_USER": "u"})


def test_malformed_integer_is_named() -> None:
    env = {"DATABASE_URL": "postgresql:///x", "MAX_SCHEDULE_AHEAD_SECONDS": "soon"}
    with pytest.raises(ConfigError, match="MAX_SCHEDULE_AHEAD_SECONDS must be an integer"):
        load_initiator_config(env)


def test_password_is_not_in_repr() -> None:
    settings = database_settings({"DATABASE_URL": "postgresql://u:secret@db/x"})
    assert "secret" not in repr(settings)


def test_the_purge_needs_its_retention_period_and_never_guesses_one() -> None:
    url = {"DATABASE_URL": "postgresql://escalator_purger@db/escalator"}
    assert load_purge_config({**url, "RETENTION_DAYS": "45"}).retention_days == 45
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        load_purge_config(url)
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        load_purge_config({**url, "RETENTION_DAYS": "0"})
