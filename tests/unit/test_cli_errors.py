"""The command line answers what it cannot reach with a message, not a traceback."""

from __future__ import annotations

import pytest

from devstack.cli import main
from devstack.demo import free_port as closed_port  # (a port nobody listens on)


def test_status_without_a_database_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://escalator:secret-password@127.0.0.1:{closed_port()}/escalator"

    assert main(["status", "restaurant-42", "--database-url", url]) == 1

    error = capsys.readouterr().err
    assert error.startswith("escalator: error: cannot connect to the database: ")
    assert "Traceback" not in error
    assert "secret-password" not in error


def test_send_without_a_region_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "REQUEST_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")

    status = main(["send", "stop", "restaurant-42", "--queue-url", "https://sqs.example/q.fifo"])

    assert status == 1
    assert "escalator: error: You must specify a region" in capsys.readouterr().err
