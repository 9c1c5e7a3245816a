"""Least privilege, measured (docs/least-privilege.md): what the measurement found no
path needs, and the stack no longer grants."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.iam import EVENT_SOURCE_ACTIONS
from devstack.least_privilege import MANAGED, grants
from infra.queue import POLLER_ACTIONS
from infra.secrets import SECRET_READ_ACTIONS


def role_actions(template: dict[str, Any], service: str) -> dict[str, list[list[str]]]:
    """Each role's statements' actions of ``service``, by role."""
    found: dict[str, list[list[str]]] = {}
    for grant in grants(template):
        actions = sorted(a for a in grant.actions if a.startswith(f"{service}:"))
        if actions and grant.kind != MANAGED:
            found.setdefault(grant.role, []).append(actions)
    return found


def test_the_initiator_may_do_with_its_queue_what_lambdas_poller_does_and_no_more(
    template: dict[str, Any],
) -> None:
    # (what the emulation checks when it creates the event source mapping, as Lambda does)
    poller = sorted(EVENT_SOURCE_ACTIONS)
    assert sorted(POLLER_ACTIONS) == poller
    ((role, statements),) = role_actions(template, "sqs").items()
    assert role.startswith("FunctionsInitiatorServiceRole")
    # not CDK's grantConsumeMessages: no sqs:ChangeMessageVisibility, no sqs:GetQueueUrl
    assert statements == [poller]


@pytest.mark.parametrize("which", ["default", "customized"])
def test_a_function_that_reads_a_secret_may_get_its_value_and_nothing_else(
    which: str, template: dict[str, Any], customized: dict[str, Any]
) -> None:
    readers = role_actions(template if which == "default" else customized, "secretsmanager")
    # the receiver, the migration's launcher, the phone, SMS, e-mail and PubNub notifiers
    assert len(readers) == 6
    # not CDK's grant_read: no secretsmanager:DescribeSecret
    more = {role: found for role, found in readers.items() if found != [list(SECRET_READ_ACTIONS)]}
    assert more == {}
