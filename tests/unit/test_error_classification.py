"""What the notifiers' error classification reads of an error: every exception it wraps
(wherever an HTTP library keeps it), each once, and whether a TLS error came from the
handshake. ``make mutate`` found these untested (docs/mutation.md); how each notifier
classifies its provider's errors is in ``tests/integration/test_notifiers.py``."""

from __future__ import annotations

import itertools
import ssl

from escalator.channels.base import exception_chain, failed_tls_handshake, innermost


class Wrapper(Exception):
    """As urllib3's ``MaxRetryError``: the underlying error only in ``reason``."""

    def __init__(self, message: str, reason: BaseException | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def test_every_wrapped_error_is_found_outermost_first() -> None:
    # GIVEN an error wrapping one in its arguments, one as its cause, which wraps one more
    refused = ConnectionRefusedError("refused")
    cause = Wrapper("pool", reason=refused)
    argument = TimeoutError("timed out")
    outer = RuntimeError("request failed", argument)
    outer.__cause__ = cause

    # THEN the chain holds each of them, level by level
    assert list(exception_chain(outer)) == [outer, cause, argument, refused]
    assert innermost(outer) == "ConnectionRefusedError"


def test_an_error_kept_only_in_reason_is_found() -> None:
    underlying = ConnectionRefusedError("refused")
    wrapper = Wrapper("max retries", reason=underlying)
    assert list(exception_chain(wrapper)) == [wrapper, underlying]


def test_errors_that_wrap_each_other_are_each_found_once() -> None:
    first, second = ValueError("first"), KeyError("second")
    first.__context__, second.__context__ = second, first

    assert list(itertools.islice(exception_chain(first), 10)) == [first, second]


def handshake() -> None:
    raise ssl.SSLError("handshake failed")


def do_handshake() -> None:
    handshake()


def read() -> None:
    raise ssl.SSLError("bad record mac")


def caught(fail: object) -> BaseException:
    try:
        assert callable(fail)
        fail()
    except ssl.SSLError as exc:
        wrapper = OSError("connection failed")
        wrapper.__cause__ = exc
        return wrapper
    raise AssertionError("nothing was raised")


def test_only_a_tls_error_from_the_handshake_counts_as_never_sent() -> None:
    assert failed_tls_handshake(caught(do_handshake)) is True
    assert failed_tls_handshake(caught(read)) is False
