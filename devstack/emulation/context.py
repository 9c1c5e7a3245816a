"""The Lambda context object of local invocations: a leaf module, so that a sandbox
process (one per function in the rehearsal) starts without importing moto."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Lambda's own default timeout is 3 s; the stack gives every function one explicitly.
DEFAULT_TIMEOUT_SECONDS = 30.0
# Where a function without a logging configuration of its own logs (Lambda's default; the
# operator's command states the same rule for itself: escalator.verification).
DEFAULT_LOG_GROUP = "/aws/lambda/{}"


def default_log_group(function_name: str) -> str:
    """The log group Lambda writes ``function_name``'s lines to by default."""
    return DEFAULT_LOG_GROUP.format(function_name)


@dataclass
class LocalContext:
    """The attributes of the Lambda context object that Powertools reads; the remaining
    time counts down to ``deadline`` (``time.monotonic()``; 30 s from creation if unset)."""

    function_name: str = "escalator-local"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:escalator"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "local-request"
    log_group_name: str = "/aws/lambda/escalator-local"
    log_stream_name: str = "local"
    deadline: float = field(default_factory=lambda: time.monotonic() + DEFAULT_TIMEOUT_SECONDS)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))
