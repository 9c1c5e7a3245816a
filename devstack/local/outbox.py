"""The outbox: every delivery the local stack makes, one JSON object per line.

``OutboxNotifier`` wraps a channel's notifier (or none: a dry run that only records)
and appends what happened to the outbox file, printing one readable line to stderr.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from escalator.channels import Notifier
from escalator.errors import AmbiguousDeliveryError
from escalator.logs import mask
from escalator.model import Delivery, Receipt

_LOCK = threading.Lock()


class DryRun:
    """A notifier that delivers nothing and always succeeds."""

    def __init__(self, channel: str, detail: dict[str, str]) -> None:
        self._channel = channel
        self._detail = detail

    def deliver(self, delivery: Delivery) -> Receipt:
        detail = dict(self._detail)
        if delivery.caller_id is not None:
            detail["from"] = delivery.caller_id
        if self._channel == "pubnub":
            from escalator.channels.pubnub import message_for

            detail["message"] = json.dumps(message_for(delivery))
        return Receipt(provider_ref=f"dry-run-{uuid.uuid4().hex[:12]}", detail=detail)


class OutboxNotifier:
    """Records each delivery of ``inner`` in the outbox; errors are recorded and re-raised."""

    def __init__(
        self, inner: Notifier, outbox: Path, *, dry_run: bool, stream: TextIO = sys.stderr
    ) -> None:
        self._inner = inner
        self._outbox = outbox
        self._dry_run = dry_run
        self._stream = stream

    def deliver(self, delivery: Delivery) -> Receipt:
        try:
            receipt = self._inner.deliver(delivery)
        except Exception as exc:
            # (an ambiguous send may have reached the provider: its outcome is unknown)
            outcome = "unknown" if isinstance(exc, AmbiguousDeliveryError) else "failed"
            self._record(delivery, outcome, None, {"error": f"{type(exc).__name__}: {exc}"})
            raise
        self._record(delivery, "sent", receipt.provider_ref, receipt.detail or {})
        return receipt

    def _record(
        self, delivery: Delivery, outcome: str, provider_ref: str | None, detail: dict[str, Any]
    ) -> None:
        sent_at = time.time()
        record = {
            "notification_id": delivery.notification_id,
            "process_id": delivery.process_id,
            "channel": delivery.channel,
            "target": delivery.target,
            "due_at": delivery.due_at,
            "sent_at": sent_at,
            "outcome": outcome,
            "provider_ref": provider_ref,
            "detail": detail,
            "dry_run": self._dry_run,
        }
        late = sent_at - delivery.due_at
        line = (
            f"{'DRY-RUN ' if self._dry_run else ''}{outcome.upper():6} {delivery.channel:7} "
            f"{mask(delivery.target)} for {delivery.process_id} "
            f"(notification {delivery.notification_id}, {late:+.1f} s after due)"
        )
        with _LOCK:
            with self._outbox.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
            print(line, file=self._stream, flush=True)


def read_outbox(path: Path) -> list[dict[str, Any]]:
    """Every record in the outbox, oldest first (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
