"""A Lambda sandbox as a process of its own: ``python -m devstack.emulation.sandbox HANDLER
[TIMEOUT]``.

It imports the handler (``escalator.handlers.confirm.handler``) once, as a cold start
does, then answers one invocation per line, each with a context whose remaining time
counts down from the function's timeout (``TIMEOUT`` seconds, 30 if not given): an
event in (JSON on stdin), one line out (``{"ok": true, "payload": ...}`` or ``{"ok":
false, "errorType": ..., "errorMessage": ...}``, each with ``logs``: the lines the
invocation wrote, ``[epoch seconds, line]`` each, which Lambda would put in the
function's log group). Its environment is the function's and nothing else, so a setting
the template does not give the function is missing here too. What the function prints
or logs goes to stderr; the answers keep stdout's file descriptor to themselves.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import threading
import time
from typing import Any, TextIO

from devstack.emulation.context import DEFAULT_TIMEOUT_SECONDS, LocalContext, default_log_group


class Lines(io.TextIOBase):
    """A text stream written through to ``through`` that also keeps, while an invocation
    runs (``start`` to ``take``), each line written to it with when it was written:
    what Lambda sends to the log group (the function's threads write here too)."""

    def __init__(self, through: TextIO) -> None:
        super().__init__()
        self._through = through
        self._lock = threading.Lock()
        self._lines: list[tuple[float, str]] | None = None
        self._partial = ""

    def write(self, text: str) -> int:
        self._through.write(text)
        with self._lock:
            if self._lines is not None:
                *complete, self._partial = (self._partial + text).split("\n")
                now = time.time()
                self._lines += [(now, line) for line in complete if line]
        return len(text)

    def flush(self) -> None:
        self._through.flush()

    def fileno(self) -> int:
        return self._through.fileno()

    def isatty(self) -> bool:
        return self._through.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._through.encoding

    def start(self) -> None:
        with self._lock:
            self._lines, self._partial = [], ""

    def take(self) -> list[tuple[float, str]]:
        """The lines written since ``start`` (an unfinished last one too); stop keeping."""
        with self._lock:
            lines = self._lines or []
            if self._partial:
                lines.append((time.time(), self._partial))
            self._lines, self._partial = None, ""
        return lines


def main(handler_path: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> int:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # (before the handler's import: its logger writes to the stream it finds then)
    output = Lines(sys.stderr)
    sys.stdout = sys.stderr = output
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "sandbox")
    handler: Any = None
    for line in sys.stdin:
        # (each invocation has the function's timeout from its start, as on Lambda)
        context = LocalContext(
            function_name=name,
            log_group_name=default_log_group(name),
            deadline=time.monotonic() + timeout,
        )
        output.start()
        try:
            if handler is None:
                module_name, _, attribute = handler_path.rpartition(".")
                handler = getattr(importlib.import_module(module_name), attribute)
            answer = {"ok": True, "payload": handler(json.loads(line), context)}
        except Exception as exc:  # reported as Lambda reports a function error
            answer = {"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc)}
        answer["logs"] = output.take()
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], *(float(argument) for argument in sys.argv[2:3])))
