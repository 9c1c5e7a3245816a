"""The command line answers what it cannot reach with a message, not a traceback."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot read the template"),
        (b"\xff\xfe not UTF-8", "cannot read the template"),
        (b"{ not json", "is not JSON"),
        (b'{"Resources": {}}', "needs one Standard and one Express state machine, it has none"),
    ],
)
def test_local_with_a_template_it_cannot_run_says_why_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, why: str
) -> None:
    # GIVEN a template file that is missing, unreadable, not JSON or not Escalator's
    template = tmp_path / "Escalator.template.json"
    if content is not None:
        template.write_bytes(content)

    # WHEN the local stack is asked to run it
    status = main(["local", "--template", str(template), "--data-dir", str(tmp_path / "data")])

    # THEN it says why in one line, and started nothing (no database under its data dir)
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("escalator: error: ")
    assert why in error
    assert "Traceback" not in error
    assert not (tmp_path / "data").exists()
