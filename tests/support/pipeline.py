"""The ``pipeline`` fixture: the delivery pipeline of ``devstack.pipeline`` on this test's
own database, with claims and leases short enough to watch them lapse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.pipeline import CALLER_IDS, Pipeline, running_pipeline

__all__ = ["CALLER_IDS", "Pipeline", "pipeline"]


@pytest.fixture
def pipeline(
    database_url: str, tls_application_url: str, aws_credentials: None
) -> Iterator[Pipeline]:
    """The functions connect as the application role, over TLS verified as on AWS
    (``verify-full``, against the session's CA); the test reads as administrator."""
    with running_pipeline(
        database_url,
        {"CLAIM_GRACE_SECONDS": "2", "SENDING_LEASE_SECONDS": "3"},
        application_url=tls_application_url,
    ) as running:
        yield running
