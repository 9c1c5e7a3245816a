"""The limits of the request contract. A leaf: it imports nothing of Escalator's."""

from __future__ import annotations

MAX_BODY_BYTES = 64 * 1024
# Producers use the process id as the SQS MessageGroupId, which is at most 128 characters.
MAX_PROCESS_ID_LENGTH = 128
MAX_NOTIFICATIONS = 100
MAX_SCHEDULE_AHEAD_SECONDS = 30 * 24 * 3600
# A notification this late is not delivered: expired by the activator, rejected at ingest.
MAX_LATENESS_SECONDS = 900
