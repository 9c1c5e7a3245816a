"""Migration launcher (outside the VPC, so it reaches Secrets Manager without an
endpoint): reads the master secret and invokes the migration function with it.

The stack's trigger invokes it with no payload; it answers what the migration answered,
or raises when the migration failed, which fails the deployment.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return bootstrap.migration_launcher().launch()
