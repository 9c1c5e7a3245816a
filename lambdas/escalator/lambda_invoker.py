"""Invoking another function of the stack (the launcher invoking the migration, the
status-callback receiver invoking the recorder)."""

from __future__ import annotations

import json
from typing import Any

from escalator.errors import EscalatorError


class InvocationError(EscalatorError):
    """The invoked function failed; the message carries its error type and message."""


class LambdaInvoker:
    """Synchronous invocations through the Lambda API. Raises ``InvocationError``.

    ``config`` (a ``botocore.config.Config``) shapes the client made here when no
    ``client`` is given: its timeouts and retries."""

    def __init__(self, client: Any = None, *, config: Any = None) -> None:
        if client is None:
            import boto3  # bundled, pinned (lambdas/requirements.txt)

            client = boto3.client("lambda", config=config)
        self._client = client

    def invoke(self, function: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The function's answer to ``payload``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.invoke(
                FunctionName=function,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload),
            )
        except (BotoCoreError, ClientError) as exc:
            raise InvocationError(f"cannot invoke {function}: {exc}") from exc
        answer: Any = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            error = answer if isinstance(answer, dict) else {}
            raise InvocationError(
                f"{function} failed: {error.get('errorType', 'Error')}: "
                f"{error.get('errorMessage', '')}"
            )
        return answer if isinstance(answer, dict) else {"answer": answer}
