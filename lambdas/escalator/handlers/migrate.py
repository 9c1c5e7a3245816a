"""Migration Lambda: applies the schema migrations bundled with the code, then stores the
caller-id registry given at deploy time.

The stack runs it once the database exists (``aws_cdk.triggers``) and again whenever
the code changes; a failing migration raises, which fails the deployment.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return bootstrap.migrator().run().to_event()
