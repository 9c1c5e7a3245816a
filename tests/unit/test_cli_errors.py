"""The command line answers what it cannot reach with a message, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from moto import mock_aws

from devstack.local.demo import free_port as closed_port  # (a port nobody listens on)
from escalator_cli.main import main


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


def run(argv: list[str]) -> tuple[int, str]:
    """The command line's exit status for ``argv``, and what it wrote to stderr
    (an exception escaping it would fail the test: that is the traceback an operator
    would see)."""
    try:
        return main(argv), ""
    except SystemExit as exit:  # (argparse refuses an argument)
        return int(exit.code or 0), ""


UNREACHABLE = "http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("argv", "expected", "says"),
    [
        (["nosuch"], 2, "invalid choice: 'nosuch'"),
        (["executions", "--max", "-1"], 2, "argument --max: -1 is not 1 or more"),
        (["executions", "--max", "lots"], 2, "argument --max: 'lots' is not a whole number"),
        (["executions", "--endpoint-url", "notaurl"], 2, "is not an http:// or https:// URL"),
        (["executions", "--endpoint-url", UNREACHABLE], 1, "Could not connect to the endpoint"),
        (["send", "--file", "{binary}"], 2, "is not UTF-8 text (the byte 0xFF at 0)"),
        (["send", "--file", "{missing}"], 2, "No such file or directory"),
        (["send", "--file", "{directory}"], 2, "Is a directory"),
        (
            ["send", "stop", "r1", "--queue-url", "{queue}", "--endpoint-url", UNREACHABLE],
            1,
            "Could not connect to the endpoint",
        ),
        (
            ["send", "start", "r1", "--notification", "nonsense", "--queue-url", "{queue}"],
            1,
            "--notification: 'nonsense' is not KEY=VALUE",
        ),
        (
            [
                "dlq",
                "redrive",
                "--queue-url",
                "{queue}",
                "--dead-letter-queue-url",
                "{queue}",
                "--endpoint-url",
                UNREACHABLE,
            ],
            1,
            "Could not connect to the endpoint",
        ),
        (["local", "--port", "0"], 2, "argument --port: 0 is not 1 or more"),
        (["local", "--port", "70000"], 2, "70000 is not a port (1 to 65535)"),
        (["local", "--tick", "0"], 2, "argument --tick: 0 is not 1 or more"),
        (["local", "--caller-id-registry", "{missing}"], 2, "No such file or directory"),
        (["local", "--lambda-faults", "2"], 2, "2 is not between 0 and 1"),
        (["demo", "--tick", "-5"], 2, "argument --tick: -5 is not 1 or more"),
        (["db", "migrate", "--sql-dir", "{missing}"], 1, "does not exist"),
    ],
)
def test_every_command_answers_a_bad_argument_file_or_endpoint_in_one_line(
    argv: list[str],
    expected: int,
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN an unreadable, missing or non-UTF-8 file, a directory, an endpoint nobody
    # listens on (tried once), a database URL nobody answers at
    binary = tmp_path / "request.json"
    binary.write_bytes(b'\xff\xfe{"process-id": ')
    (tmp_path / "directory").mkdir()
    values = {
        "binary": str(binary),
        "missing": str(tmp_path / "missing.json"),
        "directory": str(tmp_path / "directory"),
        "queue": "http://127.0.0.1:9/123456789012/requests.fifo",
        "port": str(closed_port()),
    }
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://x@127.0.0.1:{closed_port()}/escalator")

    # WHEN the command runs with it
    status, _ = run([argument.format(**values) for argument in argv])

    # THEN it says what is wrong in one line, and ends with 1 (what it met) or 2 (what
    # it was given)
    error = capsys.readouterr().err
    assert status == expected, error
    assert error.startswith("escalator"), error
    assert error.count("\n") == 1, error
    assert says in error
    assert "Traceback" not in error


def test_a_refusal_of_aws_is_one_line_with_its_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a state machine that does not exist (AWS, emulated, refuses to list it)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    missing = "arn:aws:states:eu-central-1:123456789012:stateMachine:missing"

    # WHEN an operator lists its executions
    with mock_aws():
        status, _ = run(["executions", "--state-machine-arn", missing, "--region", "eu-central-1"])

    # THEN the refusal is one line with AWS's error code
    error = capsys.readouterr().err
    assert status == 1, error
    assert error.startswith("escalator: error: An error occurred (StateMachineDoesNotExist)")
    assert error.count("\n") == 1, error


def test_local_whose_app_does_not_synthesize_says_why_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a synthesis that fails (here: the template it is told to read is not JSON)
    broken = tmp_path / "broken.template.json"
    broken.write_text("{ not json")
    monkeypatch.setenv("ESCALATOR_TEMPLATE_FILE", str(broken))

    # WHEN the local stack synthesizes the app
    status = main(["local", "--data-dir", str(tmp_path / "data")])

    # THEN, after its progress line, it says why in one line (the synthesis's last word),
    # and started nothing
    assert status == 1
    error = capsys.readouterr().err
    assert error.splitlines()[:-1] == ["escalator local: synthesizing the CDK app"], error
    assert error.splitlines()[-1].startswith("escalator: error: the CDK app did not synthesize:")
    assert "is not JSON" in error
    assert "Traceback" not in error
    assert not (tmp_path / "data").exists()
