"""The ``pipeline`` fixture: the delivery pipeline of ``devstack.local.pipeline`` on this test's
own database, with claims and leases short enough to watch them lapse.

``devstack.local.pipeline`` (and with it moto) is imported when first needed, not when the
root conftest registers the fixture: the run's controller, which never runs a test,
starts its workers two seconds sooner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from devstack.local.pipeline import CALLER_IDS, Pipeline

__all__ = ["CALLER_IDS", "Pipeline", "pipeline"]


def __getattr__(name: str) -> Any:
    if name in ("CALLER_IDS", "Pipeline"):
        from devstack.local import pipeline as module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.fixture
def pipeline(
    database_url: str, tls_application_url: str, aws_credentials: None
) -> Iterator[Pipeline]:
    """The functions connect as the application role, over TLS verified as on AWS
    (``verify-full``, against the session's CA); the test reads as administrator."""
    from devstack.local.pipeline import running_pipeline

    with running_pipeline(
        database_url,
        {"CLAIM_GRACE_SECONDS": "2", "SENDING_LEASE_SECONDS": "3"},
        application_url=tls_application_url,
    ) as running:
        yield running
