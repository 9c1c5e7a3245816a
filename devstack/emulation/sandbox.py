"""A Lambda sandbox as a process of its own: ``python -m devstack.emulation.sandbox HANDLER
[TIMEOUT]``.

It imports the handler (``escalator.handlers.confirm.handler``) once, as a cold start
does, then answers one invocation per line, each with a context whose remaining time
counts down from the function's timeout (``TIMEOUT`` seconds, 30 if not given): an
event in (JSON on stdin), one line out (``{"ok": true, "payload": ...}`` or ``{"ok":
false, "errorType": ..., "errorMessage": ...}``). Its environment is the function's and
nothing else, so a setting the template does not give the function is missing here too.
What the function prints or logs goes to stderr; the answers keep stdout's file
descriptor to themselves.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

from devstack.emulation.context import DEFAULT_TIMEOUT_SECONDS, LocalContext


def main(handler_path: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> int:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "sandbox")
    handler: Any = None
    for line in sys.stdin:
        # (each invocation has the function's timeout from its start, as on Lambda)
        context = LocalContext(function_name=name, deadline=time.monotonic() + timeout)
        try:
            if handler is None:
                module_name, _, attribute = handler_path.rpartition(".")
                handler = getattr(importlib.import_module(module_name), attribute)
            answer = {"ok": True, "payload": handler(json.loads(line), context)}
        except Exception as exc:  # reported as Lambda reports a function error
            answer = {"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc)}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], *(float(argument) for argument in sys.argv[2:3])))
