"""Argument types of the ``escalator`` command: each turns a command-line word into a value
or says, in one line, why it cannot."""

from __future__ import annotations

import argparse
import re
import urllib.parse
from datetime import timedelta
from pathlib import Path


def positive(text: str) -> int:
    """A whole number from 1 up."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not 1 or more")
    return value


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """A length of time: a whole number and its unit, ``30d``, ``12h``, ``90m``, ``0s``."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (a whole number and s, m, h or d: 30d, 12h, 0s)"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def port(text: str) -> int:
    """A TCP port to listen on: 1 to 65535."""
    value = positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1 to 65535)")
    return value


def probability(text: str) -> float:
    """A probability: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def endpoint_url(text: str) -> str:
    """An endpoint URL: http(s)://host[:port][/path]."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def readable_file(text: str) -> Path:
    """A file this process can read."""
    _read(text)
    return Path(text)


def text_file(text: str) -> str:
    """What a UTF-8 text file holds."""
    content = _read(text)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{text} is not UTF-8 text (the byte 0x{exc.object[exc.start]:02X} at {exc.start})"
        ) from None


def utf8(text: str) -> str:
    """An argument that is valid UTF-8. Python hands the bytes of one that is not over as
    lone surrogates (U+DC80 to U+DCFF), which no query can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        byte = f"the byte 0x{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise argparse.ArgumentTypeError(
            f"is not valid UTF-8 ({byte} at character {exc.start + 1})"
        ) from None
    return text


def _read(text: str) -> bytes:
    """The bytes of the file an argument names, or why it cannot be read."""
    try:
        return Path(text).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from None
