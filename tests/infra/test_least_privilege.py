"""Least privilege, measured: docs/least-privilege.md (written by `make least-privilege`,
which takes each grant away and runs the tests against the template) measures exactly
the grants of today's synthesized template. A grant added or changed without a new
measurement fails here; so does a grant no test catches that nothing explains. And what
the measurement found no path needs, the stack no longer grants."""

from __future__ import annotations

from typing import Any

import pytest
from moto import mock_aws

from devstack.emulation.iam import EVENT_SOURCE_ACTIONS, Decision, Permissions, template_references
from devstack.emulation.template import EXPRESS, STANDARD, state_machine
from devstack.mutation.least_privilege import (
    DOCUMENT,
    MANAGED,
    REASONS,
    SELECTION,
    UNEXPLAINED,
    Grant,
    action_grants,
    expected_cells,
    grants,
    reason_for,
    table_rows,
    without,
)


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, str]]:
    """The committed table's rows, by grant key."""
    return table_rows(DOCUMENT.read_text(encoding="utf-8"))


def cells(row: dict[str, str]) -> dict[str, str]:
    return {column: text for column, text in row.items() if column != "result"}


def test_the_table_lists_exactly_the_templates_grants_as_they_are(
    template: dict[str, Any], measured: dict[str, dict[str, str]]
) -> None:
    statements = {grant.key: grant for grant in grants(template)}
    actions = {a.key: a for grant in statements.values() for a in action_grants(grant)}
    # every statement, managed policy and resource-policy statement, each as it is today
    # (its role, policy, statement, actions, resources), and nothing else
    listed = {key: cells(row) for key, row in measured.items() if key not in actions}
    assert listed == {key: expected_cells(grant) for key, grant in statements.items()}, (
        "the template's grants changed since they were measured: run `make least-privilege`"
    )
    # each action listed on its own is one of a multi-action statement; every action of a
    # caught multi-action statement is listed
    for key, row in measured.items():
        if key in actions:
            assert cells(row) == expected_cells(actions[key]), key
    for key, grant in statements.items():
        if grant.multi_action and measured[key]["result"].startswith("caught"):
            assert {a.key for a in action_grants(grant)} <= set(measured), key


def test_each_grant_is_caught_by_a_selected_test_or_explained(
    template: dict[str, Any], measured: dict[str, dict[str, str]]
) -> None:
    every = {grant.key: grant for grant in grants(template)}
    every |= {a.key: a for grant in list(every.values()) for a in action_grants(grant)}
    labels = {reason.label for reason in REASONS}
    for key, row in measured.items():
        result = row["result"]
        if result.startswith("caught: "):
            assert result.removeprefix("caught: ").strip("`") in SELECTION, key
            continue
        label = result.removeprefix("not caught: ")
        assert label != UNEXPLAINED, f"{key}: no test needs it and nothing says why"
        assert label in labels, key
        reason = reason_for(every[key])
        assert reason is not None, key
        assert reason.label == label, key


def test_each_not_caught_reason_cites_an_aws_page() -> None:
    for reason in REASONS:
        assert reason.sources, reason.label
        assert all(source.startswith("https://docs.aws.amazon.com/") for source in reason.sources)


def test_what_the_run_takes_away_the_emulation_denies(template: dict[str, Any]) -> None:
    # GIVEN the tick's statement that lets it start its window
    _, tick = state_machine(template, STANDARD)
    window_id, _ = state_machine(template, EXPRESS)
    role_id = tick["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    window_arn = template_references(template)[window_id]
    (grant,) = [
        grant
        for grant in grants(template)
        if grant.actions == ("states:StartSyncExecution",) and grant.role == role_id
    ]

    def decision(changed: dict[str, Any]) -> Decision:
        with mock_aws():
            permissions = Permissions()
            permissions.install(changed)
            role = permissions.roles[role_id].arn
            return permissions.decide(role, "states:StartSyncExecution", window_arn)

    # WHEN the run takes it away, THEN the emulation's IAM denies what it allowed
    assert decision(template) is Decision.ALLOWED
    assert decision(without(template, grant)) is Decision.IMPLICIT_DENY


def test_a_managed_policy_taken_away_is_gone_from_its_role(template: dict[str, Any]) -> None:
    managed: list[Grant] = [grant for grant in grants(template) if grant.kind == MANAGED]
    assert managed
    for grant in managed[:3]:
        assert {g.key for g in grants(without(template, grant))} == {
            g.key for g in grants(template)
        } - {grant.key}


# What the measurement found no path needs, and the stack no longer grants.


def role_actions(template: dict[str, Any], service: str) -> dict[str, list[list[str]]]:
    """Each role's statements' actions of ``service``, by role."""
    found: dict[str, list[list[str]]] = {}
    for grant in grants(template):
        actions = sorted(a for a in grant.actions if a.startswith(f"{service}:"))
        if actions and grant.kind != MANAGED:
            found.setdefault(grant.role, []).append(actions)
    return found


# (infra.queue and infra.secrets are the CDK's: they run in its JavaScript runtime, on the
# one worker that starts it)
@pytest.mark.xdist_group("cdk")
def test_the_initiator_may_do_with_its_queue_what_lambdas_poller_does_and_no_more(
    template: dict[str, Any],
) -> None:
    from infra.queue import POLLER_ACTIONS

    # (what the emulation checks when it creates the event source mapping, as Lambda does)
    poller = sorted(EVENT_SOURCE_ACTIONS)
    assert sorted(POLLER_ACTIONS) == poller
    ((role, statements),) = role_actions(template, "sqs").items()
    assert role.startswith("FunctionsInitiatorServiceRole")
    # not CDK's grantConsumeMessages: no sqs:ChangeMessageVisibility, no sqs:GetQueueUrl
    assert statements == [poller]


@pytest.mark.xdist_group("cdk")
@pytest.mark.parametrize("which", ["default", "customized"])
def test_a_function_that_reads_a_secret_may_get_its_value_and_nothing_else(
    which: str, template: dict[str, Any], customized: dict[str, Any]
) -> None:
    from infra.secrets import SECRET_READ_ACTIONS

    readers = role_actions(template if which == "default" else customized, "secretsmanager")
    # the receiver, the migration's launcher, the phone, SMS, e-mail and PubNub notifiers
    assert len(readers) == 6
    # not CDK's grant_read: no secretsmanager:DescribeSecret
    more = {role: found for role, found in readers.items() if found != [list(SECRET_READ_ACTIONS)]}
    assert more == {}
