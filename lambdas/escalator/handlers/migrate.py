"""Migration Lambda: applies the schema migrations bundled with the code, then stores the
caller-id registry given at deploy time.

The stack runs it once the database exists (``aws_cdk.triggers``) and again whenever
the code changes; a failing migration raises, which fails the deployment.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator.config import load_migration_config
from escalator.database import Database, UnitOfWork
from escalator.logs import logger
from escalator.migrations import default_sql_dir, migrate
from escalator.service import store_caller_id_registry


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = load_migration_config()
    applied = migrate(config.database.dsn, default_sql_dir(), progress=logger.info)
    if config.caller_id_registry is not None:
        store_caller_id_registry(UnitOfWork(Database(config.database)), config.caller_id_registry)
    return {"applied": [migration.filename for migration in applied]}
