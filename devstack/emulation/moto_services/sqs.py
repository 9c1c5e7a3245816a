"""The replacements of the adapter's rows for moto's SQS service: the ids and characters
SQS takes, batches measured in bytes, the queue's counts only when asked."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from moto.sqs import models as sqs_models
from moto.sqs.exceptions import BatchRequestTooLong, InvalidParameterValue, SQSException

from devstack.emulation.moto_services.base import Emulation
from escalator.sqs_ids import refusal

# The queue attributes that count messages (each a scan of the whole queue), and the
# queue's properties that count them.
COUNTS = {
    "ApproximateNumberOfMessages": "approximate_number_of_messages",
    "ApproximateNumberOfMessagesDelayed": "approximate_number_of_messages_delayed",
    "ApproximateNumberOfMessagesNotVisible": "approximate_number_of_messages_not_visible",
}


class _WithoutCounts:
    """A queue whose message counts read as zero (dropped again from its attributes)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        if name.startswith("approximate_number_of_messages"):
            return 0
        return getattr(self._queue, name)


def queue_settings_only(original: Any, emulation: Emulation) -> property:
    def attributes(self: Any) -> dict[str, Any]:
        settings: dict[str, Any] = original.fget(_WithoutCounts(self))
        return {key: value for key, value in settings.items() if key not in COUNTS}

    return property(attributes)


def counts_when_asked(original: Any, emulation: Emulation) -> Callable[..., dict[str, Any]]:
    def get_queue_attributes(
        self: Any, queue_name: str, attribute_names: list[str]
    ) -> dict[str, Any]:
        # (the queue's attributes are its settings only: the counts are added here)
        answer = dict(original(self, queue_name, attribute_names))
        names = attribute_names or []
        counts = [name for name in COUNTS if "All" in names or name in names]
        if counts:
            queue = self.get_queue(queue_name)
            answer.update({name: getattr(queue, COUNTS[name]) for name in counts})
        return answer

    return get_queue_attributes


def sqs_ids_checked(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _validate_message(
        self: Any,
        queue: Any,
        message_body: str,
        delay_seconds: int,
        deduplication_id: str | None = None,
        group_id: str | None = None,
        validate_group_id: bool = True,
    ) -> None:
        original(
            self, queue, message_body, delay_seconds, deduplication_id, group_id, validate_group_id
        )
        for parameter, value in (
            ("MessageGroupId", group_id),
            ("MessageDeduplicationId", deduplication_id),
        ):
            message = None if value is None else refusal(parameter, value)
            if message is not None:
                raise InvalidParameterValue(message)
        # (moto counted characters: SQS counts the bytes of the body's UTF-8)
        if len(message_body.encode("utf-8", "surrogatepass")) > queue.maximum_message_size:
            raise InvalidParameterValue(
                "One or more parameters are invalid. Reason: Message must be shorter than"
                f" {queue.maximum_message_size} bytes."
            )
        if _OUTSIDE_SQS_CHARACTERS.search(message_body):
            raise InvalidMessageContents()

    return _validate_message


# What SQS takes in a message body: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
# #x10000 to #x10FFFF (the W3C's XML characters); anything else refuses the message.
_OUTSIDE_SQS_CHARACTERS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class InvalidMessageContents(SQSException):  # type: ignore[misc]
    """What SQS answers for a message body with a character outside its set."""

    def __init__(self) -> None:
        super().__init__(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD |"
            " #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        )


def sqs_batches_measured_in_bytes(original: Any, emulation: Emulation) -> Callable[..., Any]:
    def send_message_batch(self: Any, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
        size = sum(
            len(entry["MessageBody"].encode("utf-8", "surrogatepass")) for entry in entries.values()
        )
        if size > sqs_models.MAXIMUM_MESSAGE_LENGTH:
            raise BatchRequestTooLong(size)
        return original(self, queue_name, entries)

    return send_message_batch
