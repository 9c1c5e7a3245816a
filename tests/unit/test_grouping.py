"""The test run shares expensive module fixtures (a local stack, the deploy rehearsal) by
running their tests on one worker: ``--dist loadgroup`` must really group them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("grouping-check")


def test_a_grouped_test_carries_its_group_when_the_run_groups(
    request: pytest.FixtureRequest,
) -> None:
    # (an xdist worker of a `--dist loadgroup` run has this option set)
    grouping = bool(getattr(request.config.option, "loadgroup", False))
    assert request.node.nodeid.endswith("@grouping-check") == grouping
