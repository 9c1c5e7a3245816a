"""The ``escalator`` command.

escalator db migrate [--database-url URL] [--sql-dir DIR]
escalator local [--port 4566] [--tick 60] [--database-url URL] [--data-dir DIR]
                [--caller-id-registry FILE] [--outbox PATH] [--lambda-faults P] [--fault-seed N]
                [--exact-schedule] [--schedule-seed N] [--template FILE]
escalator send start PROCESS_ID --notification 'channel=phone,at=+90,phone-number=+385...'
escalator send stop PROCESS_ID
escalator send --file request.json
escalator status PROCESS_ID [--database-url URL] [--json]
escalator executions [--state-machine-arn ARN] [--max N] [--json]
escalator dlq redrive [--queue-url URL] [--dead-letter-queue-url URL]
escalator demo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from devstack.demo import DEMO_TICK
from devstack.stack import LocalOptions
from devstack.template import TemplateError
from escalator.config import database_settings
from escalator.contract import InvalidRequest
from escalator.errors import ConfigError, DatabaseError
from escalator.migrations import MigrationError, default_sql_dir, migrate


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    import psycopg2
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except (ConfigError, MigrationError, TemplateError) as exc:
        print(f"escalator: error: {exc}", file=sys.stderr)
        return 1
    except (DatabaseError, psycopg2.OperationalError) as exc:
        # (libpq's message names the host and port, never the password; its first line
        # says what failed)
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        print(f"escalator: error: {reason}", file=sys.stderr)
        return 1
    except (NoRegionError, NoCredentialsError) as exc:
        print(
            f"escalator: error: {exc} (give --region, or set AWS_REGION and credentials)",
            file=sys.stderr,
        )
        return 1
    except InvalidRequest as exc:
        print(f"escalator: invalid request: {exc.reason}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        # (an endpoint that does not answer, or AWS's refusal: its code and message)
        print(f"escalator: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        # (a port in use, a directory it may not write: what the system said)
        print(f"escalator: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return status


def _one_line(exc: BaseException) -> str:
    """An error's message on one line."""
    return " ".join((str(exc).strip() or type(exc).__name__).split())


class _Parser(argparse.ArgumentParser):
    """An argument parser whose complaint is one line (and where to read more)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="escalator", description="Escalator: escalation notifications on AWS.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    migrate_parser = db_commands.add_parser(
        "migrate", help="apply the pending schema migrations, in order"
    )
    _database_option(migrate_parser)
    migrate_parser.add_argument(
        "--sql-dir",
        type=Path,
        default=default_sql_dir(),
        help="migration files (default: %(default)s)",
    )
    migrate_parser.set_defaults(run=_migrate)

    local = commands.add_parser("local", help="run the whole system on this machine")
    defaults = LocalOptions()
    local.add_argument(
        "--port", type=_port, default=defaults.port, help="AWS endpoint port (%(default)s)"
    )
    local.add_argument(
        "--tick",
        type=_positive,
        default=defaults.tick,
        help="schedule period in seconds (%(default)s)",
    )
    local.add_argument("--database-url", help="PostgreSQL (default: embedded, in --data-dir)")
    local.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    local.add_argument(
        "--caller-id-registry", type=_readable_file, help="JSON file: prefix -> caller id"
    )
    local.add_argument("--outbox", type=Path, default=defaults.outbox)
    local.add_argument(
        "--lambda-faults",
        type=_probability,
        default=defaults.lambda_faults,
        metavar="P",
        help="throttle P of the Lambda invocations before they run, and lose the answer of P"
        " of those that ran, as AWS may (0 to 1; default %(default)s)",
    )
    local.add_argument("--fault-seed", type=int, help="replay the same faults")
    local.add_argument(
        "--exact-schedule",
        action="store_true",
        help="tick at the start of each period (default: at a random moment within it, "
        "as EventBridge Scheduler does)",
    )
    local.add_argument("--schedule-seed", type=int, help="replay the same tick moments")
    local.add_argument(
        "--template",
        type=Path,
        help="run this synthesized template (e.g. cdk.out/Escalator.template.json: what is"
        " about to be deployed) instead of synthesizing the CDK app",
    )
    local.set_defaults(run=_local)

    send = commands.add_parser("send", help="send a request to the queue")
    send.add_argument("action", nargs="?", choices=["start", "stop"])
    send.add_argument("process_id", nargs="?", metavar="PROCESS_ID")
    send.add_argument(
        "--notification",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="channel=phone,at=+90,phone-number=+385... (at: epoch seconds or +SECONDS)",
    )
    send.add_argument(
        "--file", type=_text_file, metavar="FILE", help="send this JSON request instead"
    )
    send.add_argument("--queue-url", default=os.environ.get("REQUEST_QUEUE"))
    _aws_options(send)
    send.set_defaults(run=_send)

    status = commands.add_parser("status", help="a process and its notifications")
    status.add_argument("process_id", metavar="PROCESS_ID", type=_utf8)
    _database_option(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=_status)

    executions = commands.add_parser(
        "executions", help="recent ticks and the outcome of each notification they delivered"
    )
    executions.add_argument("--state-machine-arn", default=os.environ.get("STATE_MACHINE_ARN"))
    executions.add_argument("--max", type=_positive, default=10, help="how many (10)")
    executions.add_argument("--json", action="store_true", help="print JSON")
    _aws_options(executions)
    executions.set_defaults(run=_executions)

    dlq = commands.add_parser("dlq", help="the dead-letter queue of the requests")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    redrive = dlq_commands.add_parser(
        "redrive", help="move the dead-lettered requests back to the queue, in order, once"
    )
    redrive.add_argument("--queue-url", default=os.environ.get("REQUEST_QUEUE"))
    redrive.add_argument("--dead-letter-queue-url", default=os.environ.get("DEAD_LETTER_QUEUE"))
    _aws_options(redrive)
    redrive.set_defaults(run=_redrive)

    demo = commands.add_parser("demo", help="a scripted scenario on the local stack")
    demo.add_argument(
        "--tick", type=_positive, default=DEMO_TICK, help="schedule period (%(default)s)"
    )
    demo.set_defaults(run=_demo)
    return parser


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (default: $DATABASE_URL, or the DB_* variables)"
    )


def _aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url", type=_endpoint_url, help="AWS endpoint (e.g. the local stack's)"
    )
    parser.add_argument("--region", help="AWS region")


def _migrate(args: argparse.Namespace) -> int:
    settings = database_settings(url=args.database_url)
    applied = migrate(settings, args.sql_dir, progress=lambda line: print(line, file=sys.stderr))
    print(f"applied {len(applied)} migration(s)")
    return 0


def _local(args: argparse.Namespace) -> int:
    from devstack.stack import run

    return run(
        LocalOptions(
            port=args.port,
            tick=args.tick,
            database_url=args.database_url,
            data_dir=args.data_dir,
            caller_id_registry=args.caller_id_registry,
            outbox=args.outbox,
            lambda_faults=args.lambda_faults,
            fault_seed=args.fault_seed,
            exact_schedule=args.exact_schedule,
            schedule_seed=args.schedule_seed,
            template=args.template,
        )
    )


def _positive(text: str) -> int:
    """A whole number from 1 up."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not 1 or more")
    return value


def _port(text: str) -> int:
    """A TCP port to listen on: 1 to 65535."""
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1 to 65535)")
    return value


def _endpoint_url(text: str) -> str:
    """An endpoint URL: http(s)://host[:port][/path]."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def _readable_file(text: str) -> Path:
    """A file this process can read."""
    _read(text)
    return Path(text)


def _text_file(text: str) -> str:
    """What a UTF-8 text file holds."""
    content = _read(text)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{text} is not UTF-8 text (the byte 0x{exc.object[exc.start]:02X} at {exc.start})"
        ) from None


def _read(text: str) -> bytes:
    """The bytes of the file an argument names, or why it cannot be read."""
    try:
        return Path(text).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from None


def _probability(text: str) -> float:
    """A command-line probability: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def parse_notification(text: str, *, now: int) -> dict[str, Any]:
    """``channel=phone,at=+90,phone-number=+385...`` -> a notification object."""
    fields: dict[str, Any] = {}
    for part in text.split(","):
        key, separator, value = part.partition("=")
        if not separator:
            raise ConfigError(f"--notification: {part!r} is not KEY=VALUE")
        fields[key.strip()] = value.strip()
    at = str(fields.get("at", ""))
    if at.startswith("+") and at[1:].isdigit():
        fields["at"] = now + int(at[1:])
    elif at.isdigit():
        fields["at"] = int(at)
    return fields


def _redrive(args: argparse.Namespace) -> int:
    import boto3

    from escalator.client import redrive

    if not args.queue_url or not args.dead_letter_queue_url:
        raise ConfigError(
            "--queue-url and --dead-letter-queue-url are required (or set REQUEST_QUEUE and "
            "DEAD_LETTER_QUEUE; the stack's outputs RequestQueueUrl and DeadLetterQueueUrl)"
        )
    sqs = boto3.client("sqs", endpoint_url=args.endpoint_url, region_name=args.region)

    def show(moved: int) -> None:
        if moved % 100 == 0:
            print(f"moved {moved} ...", file=sys.stderr, flush=True)

    moved = redrive(sqs, args.dead_letter_queue_url, args.queue_url, progress=show)
    print(f"moved {moved} request(s) back to the queue")
    return 0


def _send(args: argparse.Namespace) -> int:
    from escalator.client import Producer

    if not args.queue_url:
        raise ConfigError("--queue-url is required (or set REQUEST_QUEUE)")
    producer = Producer(args.queue_url, endpoint_url=args.endpoint_url, region=args.region)
    if args.file is not None:
        message_id = producer.send(args.file)
    elif args.action == "start" and args.process_id:
        now = int(time.time())
        notifications = [parse_notification(text, now=now) for text in args.notification]
        message_id = producer.start(args.process_id, notifications)
    elif args.action == "stop" and args.process_id:
        message_id = producer.stop(args.process_id)
    else:
        raise ConfigError("say 'start PROCESS_ID', 'stop PROCESS_ID' or --file FILE")
    print(message_id)
    return 0


def _status(args: argparse.Namespace) -> int:
    from escalator.database import Database, UnitOfWork

    with UnitOfWork(Database(database_settings(url=args.database_url))) as uow:
        history = uow.processes.history(args.process_id)
    if args.json:
        print(json.dumps(history, indent=2))
        return 0 if history else 1
    if not history:
        print(f"no process {args.process_id!r}")
        return 1
    # (JSON escapes control characters itself; text from the database, which producers
    # wrote, is shown escaped: it could hold a terminal's escape sequences)
    for process in history:
        ended = f", ended {process['ended_at']}" if process["ended_at"] else ""
        print(
            shown(
                f"{process['process_id']}: {process['state']}"
                f" (started {process['started_at']}{ended})"
            )
        )
        for item in process["notifications"]:
            ref = f" ref={item['provider_ref']}" if item["provider_ref"] else ""
            error = f" error={item['error']}" if item["error"] else ""
            reported = item["provider_status"]
            provider = f" provider_status={reported}" if reported else ""
            print(
                shown(
                    f"  #{item['id']:<6} {item['channel']:7} {shown(item['target']):24}"
                    f" due {item['due_at']}  {item['state']:9}{provider}{ref}{error}"
                )
            )
    return 0


def shown(text: str) -> str:
    """``text`` as a terminal may print it: every character that is not printable (a
    control character such as ESC, which starts the sequences that clear a screen or
    retitle a window; format characters, separators, lone surrogates, the no-break
    space) written as its Python escape (``\\x1b``, ``\\xa0``), the rest as it is."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def _utf8(text: str) -> str:
    """An argument that is valid UTF-8. Python hands the bytes of one that is not over as
    lone surrogates (U+DC80 to U+DCFF), which no query can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        byte = f"the byte 0x{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise argparse.ArgumentTypeError(
            f"is not valid UTF-8 ({byte} at character {exc.start + 1})"
        ) from None
    return text


def _executions(args: argparse.Namespace) -> int:
    import boto3

    from escalator.executions import recent_executions, where_windows_are

    sfn = boto3.client("stepfunctions", endpoint_url=args.endpoint_url, region_name=args.region)
    found = recent_executions(state_machine_arn=args.state_machine_arn, limit=args.max, sfn=sfn)
    note = where_windows_are(sfn)
    if args.json:
        print(json.dumps(found, indent=2))
        print(note, file=sys.stderr)
        return 0
    for execution in found:
        print(
            f"{execution['name']:45} {execution['status']:9} {execution['started']}"
            f"  {_window_line(execution)}"
        )
    print(f"\n{note}")
    return 0


def _window_line(execution: dict[str, Any]) -> str:
    """What a tick's window did, on one line."""
    outcomes = ", ".join(
        f"#{item['notification_id']} {item['outcome']}" for item in execution["outcomes"]
    )
    window = execution["window"]
    if not window.get("failed"):
        return outcomes or "nothing delivered"
    if "tick_error" in window:
        return f"the tick failed: {window['tick_error']}: {window['tick_cause']}"
    released = window.get("released")
    claims = "" if released is None else f"; {released} claims went back to the ticks"
    return (
        f"window {window.get('status', 'did not start')}: {window.get('error')}"
        f" {window.get('cause') or ''}".rstrip()
        + claims
    )


def _demo(args: argparse.Namespace) -> int:
    from devstack.demo import run_demo

    return run_demo(tick=args.tick)


if __name__ == "__main__":
    sys.exit(main())
