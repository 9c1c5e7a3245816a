"""Migration Lambda (in the VPC): applies the schema migrations bundled with the code as
the master user, then stores the caller-id registry given at deploy time.

It holds no credentials of its own: the launcher (``launch_migration``), which the stack
runs once the database exists and at every deploy that changes the code, hands it the
master user's in the invocation (``{"master": {...}}``). A failing migration raises,
which fails the launcher and so the deployment.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from escalator.model import MasterCredentials


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return bootstrap.migrator().run(MasterCredentials.from_event(event)).to_event()
