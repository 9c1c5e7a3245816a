"""The development harness's commands of ``escalator``: ``local`` (the whole system on this
machine) and ``demo`` (a scripted scenario on it). Registered through the entry-point
group ``escalator.commands`` (pyproject.toml), so the operator's commands never load them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from devstack.emulation.template import TemplateError
from devstack.local.demo import DEMO_TICK
from devstack.local.stack import LocalOptions
from escalator_cli.arguments import port, positive, probability, readable_file
from escalator_cli.main import CommandError


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``local`` and ``demo`` to the ``escalator`` command."""
    local = commands.add_parser("local", help="run the whole system on this machine")
    defaults = LocalOptions()
    local.add_argument(
        "--port", type=port, default=defaults.port, help="AWS endpoint port (%(default)s)"
    )
    local.add_argument(
        "--tick",
        type=positive,
        default=defaults.tick,
        help="schedule period in seconds (%(default)s)",
    )
    local.add_argument("--database-url", help="PostgreSQL (default: embedded, in --data-dir)")
    local.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    local.add_argument(
        "--caller-id-registry", type=readable_file, help="JSON file: prefix -> caller id"
    )
    local.add_argument("--outbox", type=Path, default=defaults.outbox)
    local.add_argument(
        "--lambda-faults",
        type=probability,
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

    demo = commands.add_parser("demo", help="a scripted scenario on the local stack")
    demo.add_argument(
        "--tick", type=positive, default=DEMO_TICK, help="schedule period (%(default)s)"
    )
    demo.set_defaults(run=_demo)


def _local(args: argparse.Namespace) -> int:
    from devstack.local.stack import run

    try:
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
    except TemplateError as exc:
        raise CommandError(str(exc)) from exc


def _demo(args: argparse.Namespace) -> int:
    from devstack.local.demo import run_demo

    return run_demo(tick=args.tick)
