"""What SQS accepts as the ``MessageGroupId`` and the ``MessageDeduplicationId`` of a FIFO
message: 1 to 128 characters of printable ASCII without the space (0x21 to 0x7E: letters,
digits and punctuation). Anything else SQS refuses with ``InvalidParameterValue``.

Producers send the process id as the group id, so the request contract holds process ids
to this alphabet, and the producer client and the local emulation of SQS refuse what SQS
refuses, with its message. A leaf: it imports nothing of Escalator's.
"""

from __future__ import annotations

import re

MAX_LENGTH = 128
# One character outside the alphabet (the same expression in Python and ECMA-262).
OUTSIDE_THE_ALPHABET = "[^!-~]"
_OUTSIDE = re.compile(OUTSIDE_THE_ALPHABET)


def first_outside_the_alphabet(value: str) -> int | None:
    """The index of the first character of ``value`` outside the alphabet, or ``None``."""
    found = _OUTSIDE.search(value)
    return None if found is None else found.start()


def refusal(parameter: str, value: str) -> str | None:
    """SQS's ``InvalidParameterValue`` message for ``value`` as ``parameter``
    (``MessageGroupId``, ``MessageDeduplicationId``), or ``None`` when SQS takes it.

    SQS quotes the value as it is; here every character outside printable ASCII is
    escaped (``\\xa0``, ``\\u0430``), so the message shows what a screen would hide."""
    if 1 <= len(value) <= MAX_LENGTH and first_outside_the_alphabet(value) is None:
        return None
    return (
        f"Value {escaped(value)} for parameter {parameter} is invalid. Reason: {parameter}"
        f" can only include alphanumeric and punctuation characters. 1 to {MAX_LENGTH} in"
        " length."
    )


def escaped(text: str) -> str:
    """``text`` with every character outside printable ASCII (and the space) written as
    a Python escape: ``\\x1b``, ``\\xa0``, ``\\u0430``, ``\\udcff``."""
    return "".join(
        char if " " <= char <= "~" else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
