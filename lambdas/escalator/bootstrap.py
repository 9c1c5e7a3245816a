"""Wiring: build each entry point's service from the configuration, once per cold start."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from escalator.config import load_initiator_config
from escalator.database import Database, UnitOfWork
from escalator.model import RequestMessage, RequestOutcome
from escalator.service import handle_request

Initiator = Callable[[RequestMessage], RequestOutcome]


@functools.cache
def initiator() -> Initiator:
    """The initiator's request handler, bound to the configured database."""
    config = load_initiator_config()
    database = Database(config.database)

    def handle(message: RequestMessage) -> RequestOutcome:
        return handle_request(
            UnitOfWork(database),
            message,
            now=int(time.time()),
            max_schedule_ahead=config.max_schedule_ahead_seconds,
        )

    return handle
