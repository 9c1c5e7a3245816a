"""Migration Lambda: applies the schema migrations bundled with the code.

The stack runs it once the database exists (``aws_cdk.triggers``) and again whenever
the code changes; a failing migration raises, which fails the deployment.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator.config import database_settings
from escalator.logs import logger
from escalator.migrations import default_sql_dir, migrate


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    applied = migrate(database_settings().dsn, default_sql_dir(), progress=logger.info)
    return {"applied": [migration.filename for migration in applied]}
