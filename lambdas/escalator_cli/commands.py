"""The operator's commands: ``db migrate``, ``db purge``, ``db stats``, ``send``,
``status``, ``executions``, ``dlq redrive`` and ``verify``, each a parser and the function
that runs it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from escalator.config import database_settings
from escalator.errors import ConfigError
from escalator.migrations import default_sql_dir, migrate
from escalator.verification import TIMEOUT_SECONDS, Verification, moment
from escalator_cli.arguments import duration, endpoint_url, positive, text_file, utf8

NAMES = ("db", "send", "status", "executions", "dlq", "verify")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the operator's commands (``NAMES``) to the ``escalator`` command."""
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

    purge = db_commands.add_parser(
        "purge",
        help="delete finished processes, their notifications and old request-log entries",
        description=(
            "Delete the processes that ended longer than DURATION ago and owe nothing, with "
            "their notifications, and the request-log entries older than DURATION; the "
            "request log is never purged younger than a request can come back from the "
            "dead-letter queue. Active processes and notifications still owed stay."
        ),
    )
    purge.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="DURATION",
        help="30d, 12h, 90m, 0s",
    )
    purge.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    purge.add_argument(
        "--batch", type=positive, default=None, help="processes per transaction (500)"
    )
    _database_option(purge)
    purge.set_defaults(run=_purge)

    stats = db_commands.add_parser(
        "stats", help="table and index sizes, rows by state and the oldest row of each"
    )
    _database_option(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=_stats)

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
        "--file", type=text_file, metavar="FILE", help="send this JSON request instead"
    )
    send.add_argument("--queue-url", default=os.environ.get("REQUEST_QUEUE"))
    _aws_options(send)
    send.set_defaults(run=_send)

    status = commands.add_parser("status", help="a process and its notifications")
    status.add_argument("process_id", metavar="PROCESS_ID", type=utf8)
    _database_option(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=_status)

    executions = commands.add_parser(
        "executions", help="recent ticks and the outcome of each notification they delivered"
    )
    executions.add_argument("--state-machine-arn", default=os.environ.get("STATE_MACHINE_ARN"))
    executions.add_argument("--max", type=positive, default=10, help="how many (10)")
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

    verify = commands.add_parser(
        "verify",
        help="prove a deployment delivers: a tick's notification and a near-due arrival, once each",
        description=(
            "Send through the deployed queue two console notifications: one a tick must "
            "claim, and one due so soon that the initiator's own window delivers it; read "
            "the console notifier's log group until each was delivered (and a little "
            "longer), then stop the process. Prints the path each took and how late it "
            "was; exit 0 only when each was delivered once, by its own path, never early."
        ),
    )
    verify.add_argument(
        "--stack", metavar="NAME", help="the deployed stack (cdk deploy's: Escalator)"
    )
    verify.add_argument(
        "--timeout",
        type=positive,
        default=TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="give up after this long (%(default)s)",
    )
    verify.add_argument("--json", action="store_true", help="print JSON")
    _aws_options(verify)
    verify.set_defaults(run=_verify)


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (default: $DATABASE_URL, or the DB_* variables)"
    )


def _aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url", type=endpoint_url, help="AWS endpoint (e.g. the local stack's)"
    )
    parser.add_argument("--region", help="AWS region")


def _migrate(args: argparse.Namespace) -> int:
    settings = database_settings(url=args.database_url)
    applied = migrate(settings, args.sql_dir, progress=lambda line: print(line, file=sys.stderr))
    print(f"applied {len(applied)} migration(s)")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from escalator.database import Database
    from escalator.retention import PURGE_BATCH, REQUEST_LOG_HORIZON, Purged, purge, purgeable

    database = Database(database_settings(url=args.database_url))
    if args.dry_run:
        result = purgeable(database, args.older_than)
    else:

        def show(purged: Purged) -> None:
            print(f"deleted {purged.describe()} ...", file=sys.stderr, flush=True)

        result = purge(database, args.older_than, batch=args.batch or PURGE_BATCH, progress=show)
    cutoffs = result.cutoffs
    print(
        f"{'would delete' if args.dry_run else 'deleted'} {result.purged.describe()}:"
        f" processes finished before {cutoffs.finished_before:%Y-%m-%dT%H:%M:%SZ},"
        f" requests received before {cutoffs.requests_before:%Y-%m-%dT%H:%M:%SZ}"
    )
    if args.older_than < REQUEST_LOG_HORIZON:
        print(
            f"(the request log is kept {REQUEST_LOG_HORIZON.days} days: a request can come "
            "back from the dead-letter queue until then)"
        )
    return 0


def _stats(args: argparse.Namespace) -> int:
    from escalator.database import Database
    from escalator.retention import statistics

    found = statistics(Database(database_settings(url=args.database_url)))
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    print(f"{'table':14} {'rows (est.)':>12} {'data':>10} {'indexes':>10} {'dead rows':>10}")
    for table in found["tables"]:
        print(
            f"{table['table']:14} {table['estimated_rows']:>12} {_size(table['table_bytes']):>10}"
            f" {_size(table['index_bytes']):>10} {table['dead_rows']:>10}"
        )
    print()
    print(f"{'table':14} {'state':10} {'rows':>10}  oldest")
    for row in found["rows"]:
        print(f"{row['table']:14} {row['state']:10} {row['rows']:>10}  {row['oldest']}")
    return 0


def _size(size: int) -> str:
    """Bytes as an operator reads them: 8.0 kB, 1.5 MB, 2.1 GB."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


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


def _verify(args: argparse.Namespace) -> int:
    import boto3

    from escalator.verification import deployment_at_endpoint, deployment_of_stack, verify

    if not args.stack and not args.endpoint_url:
        raise ConfigError(
            "say which deployment: --stack NAME (a deployed stack), or --endpoint-url URL "
            "(the local stack's)"
        )
    session = boto3.Session(region_name=args.region)

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=args.endpoint_url)

    if args.stack:
        deployment = deployment_of_stack(
            args.stack, cloudformation=client("cloudformation"), lambda_client=client("lambda")
        )
    else:
        deployment = deployment_at_endpoint(
            sqs=client("sqs"), lambda_client=client("lambda"), endpoint=args.endpoint_url
        )

    def show(line: str) -> None:
        print(f"escalator verify: {line}", file=sys.stderr, flush=True)

    report = verify(
        deployment,
        sqs=client("sqs"),
        logs=client("logs"),
        timeout=args.timeout,
        progress=show,
    )
    return show_verification(report, as_json=args.json)


def show_verification(report: Verification, *, as_json: bool = False) -> int:
    """Print what a verification saw (a line per notification, then the verdict); 0 when
    it verified, 1 when not."""
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return 0 if report.ok else 1
    print(f"{report.process_id} (message {report.message_id}), read in {report.log_group}:")
    for item in report.notifications:
        seen = "; ".join(delivered.describe() for delivered in item.deliveries)
        times = {0: "not delivered", 1: "delivered once"}.get(
            len(item.deliveries), f"delivered {len(item.deliveries)} times"
        )
        verdict = "ok" if item.problem is None else f"FAILED: {item.problem}"
        print(
            f"  {item.kind:8} due {moment(item.due_at)}  {times}"
            + (f", {seen}" if seen else "")
            + f"  {verdict}"
        )
    if report.ok:
        print("verified: each delivered once, by its own path")
        return 0
    print(
        f"NOT verified (after {report.waited_seconds:.0f} s): "
        + "; ".join(f"{item.kind}: {item.problem}" for item in report.notifications if item.problem)
    )
    return 1
