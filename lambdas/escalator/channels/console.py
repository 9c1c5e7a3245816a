"""The console channel: writes the notification to the log. For trials and new deployments
(``escalator verify`` reads its lines in the notifier's log group: the label, the claim's
owner, which tells the path it took, and when it went out)."""

from __future__ import annotations

import time

from escalator.channels.base import Channel
from escalator.logs import logger
from escalator.model import Delivery, Receipt

MAX_LABEL = 200


def target_problem(label: str) -> str | None:
    """Why ``label`` is not a usable console label, or ``None``."""
    if not label.strip():
        return "is empty"
    if len(label) > MAX_LABEL:
        return f"is longer than {MAX_LABEL} characters"
    if not label.isprintable():
        return "contains control characters"
    return None


# Its log line's message.
LOGGED = "console notification"


class ConsoleNotifier:
    """Logs the delivery; never fails."""

    def deliver(self, delivery: Delivery) -> Receipt:
        logger.info(
            LOGGED,
            extra={
                "label": delivery.target,
                "due_at": delivery.due_at,
                "owner": delivery.owner,
                "delivered_at": round(time.time(), 3),
            },
        )
        return Receipt(provider_ref=f"console-{delivery.notification_id}")


CHANNEL = Channel(
    name="console",
    target_field="label",
    target_problem=target_problem,
    task_name="Write to console",
    notifier=ConsoleNotifier,
    # for trials: every line is wanted (no guard), and not a figure on the dashboard
    development=True,
)
