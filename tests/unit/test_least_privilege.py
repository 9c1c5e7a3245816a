"""How the least-privilege run takes one grant away (devstack.mutation.least_privilege), on small
templates of the shapes CDK writes, and how its report is read back."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.mutation.least_privilege import (
    ACTION,
    MANAGED,
    RESOURCE_POLICY,
    STATEMENT,
    UNEXPLAINED,
    Result,
    action_grants,
    grants,
    previous_catchers,
    render,
    report,
    table_rows,
    without,
)

QUEUE_ARN = {"Fn::GetAtt": ["Queue", "Arn"]}
BASIC_POLICY = ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
BASIC = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, BASIC_POLICY]]}


def lambda_role(**properties: Any) -> dict[str, Any]:
    trust = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
    }
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": trust, **properties},
    }


def small_template() -> dict[str, Any]:
    """A function's role with a default policy (two statements, one of two actions), a
    managed policy, an inline policy; a second role's policy of one statement that a
    function depends on; a resource-policy statement."""
    return {
        "Resources": {
            "Role": lambda_role(
                ManagedPolicyArns=[BASIC],
                Policies=[
                    {
                        "PolicyName": "Inline",
                        "PolicyDocument": {
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": ["lambda:InvokeFunction"],
                                    "Resource": "*",
                                }
                            ]
                        },
                    }
                ],
            ),
            "RoleDefaultPolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyName": "RoleDefaultPolicy",
                    "Roles": [{"Ref": "Role"}],
                    "PolicyDocument": {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                                "Resource": QUEUE_ARN,
                            },
                            {
                                "Sid": "Start",
                                "Effect": "Allow",
                                "Action": "states:StartExecution",
                                "Resource": {"Ref": "Machine"},
                            },
                        ]
                    },
                },
            },
            "Other": lambda_role(),
            "OtherDefaultPolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyName": "OtherDefaultPolicy",
                    "Roles": [{"Ref": "Other"}],
                    "PolicyDocument": {
                        "Statement": [
                            {"Effect": "Allow", "Action": "xray:PutTraceSegments", "Resource": "*"}
                        ]
                    },
                },
            },
            "Function": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Role": {"Fn::GetAtt": ["Other", "Arn"]}},
                "DependsOn": ["OtherDefaultPolicy", "Other"],
            },
            "Waiter": {"Type": "AWS::SQS::Queue", "DependsOn": "OtherDefaultPolicy"},
            "Url": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunctionUrl",
                    "FunctionName": {"Fn::GetAtt": ["Function", "Arn"]},
                    "FunctionUrlAuthType": "NONE",
                    "Principal": "*",
                },
            },
        }
    }


def by_key(template: dict[str, Any]) -> dict[str, Any]:
    return {grant.key: grant for grant in grants(template)}


def test_every_grant_of_every_kind_is_found() -> None:
    found = by_key(small_template())
    assert {key: grant.kind for key, grant in found.items()} == {
        "Role/Inline/0": STATEMENT,
        "Role/AWSLambdaBasicExecutionRole": MANAGED,
        "RoleDefaultPolicy/0": STATEMENT,
        "RoleDefaultPolicy/1": STATEMENT,
        "OtherDefaultPolicy/0": STATEMENT,
        "Url": RESOURCE_POLICY,
    }
    statement = found["RoleDefaultPolicy/0"]
    assert (statement.role, statement.policy, statement.statement) == (
        "Role",
        "RoleDefaultPolicy",
        "0",
    )
    assert statement.actions == ("sqs:ReceiveMessage", "sqs:DeleteMessage")
    assert statement.resources == ("${Queue.Arn}",)
    assert statement.trusted == ("lambda.amazonaws.com",)
    assert found["RoleDefaultPolicy/1"].statement == "Start"  # its Sid
    managed = found["Role/AWSLambdaBasicExecutionRole"]
    assert managed.policy == "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    assert "logs:PutLogEvents" in managed.actions  # (AWS's document, as moto keeps it)
    url = found["Url"]
    assert (url.role, url.actions) == ("Function", ("lambda:InvokeFunctionUrl",))
    assert url.statement == "Principal *, FunctionUrlAuthType NONE"


def statements(template: dict[str, Any], policy: str) -> list[Any]:
    return list(template["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"])


def test_a_statement_taken_away_leaves_the_others() -> None:
    template = small_template()
    changed = without(template, by_key(template)["RoleDefaultPolicy/0"])
    assert statements(changed, "RoleDefaultPolicy") == statements(template, "RoleDefaultPolicy")[1:]
    assert statements(template, "RoleDefaultPolicy")[0]["Resource"] == QUEUE_ARN  # (a copy)


def test_a_policy_left_without_statements_goes_and_nothing_depends_on_it() -> None:
    template = small_template()
    changed = without(template, by_key(template)["OtherDefaultPolicy/0"])
    assert "OtherDefaultPolicy" not in changed["Resources"]
    assert changed["Resources"]["Function"]["DependsOn"] == ["Other"]
    assert "DependsOn" not in changed["Resources"]["Waiter"]


def test_an_action_taken_away_leaves_the_statements_other_actions() -> None:
    template = small_template()
    statement = by_key(template)["RoleDefaultPolicy/0"]
    first, second = action_grants(statement)
    assert (first.kind, first.key, first.actions) == (
        ACTION,
        "RoleDefaultPolicy/0/sqs:ReceiveMessage",
        ("sqs:ReceiveMessage",),
    )
    changed = without(template, first)
    assert statements(changed, "RoleDefaultPolicy")[0]["Action"] == ["sqs:DeleteMessage"]
    assert without(template, second) != changed
    # a statement of one action is not split
    assert action_grants(by_key(template)["RoleDefaultPolicy/1"]) == []


def test_a_managed_policy_an_inline_statement_and_a_resource_policy_are_taken_away() -> None:
    template = small_template()
    found = by_key(template)
    managed = without(template, found["Role/AWSLambdaBasicExecutionRole"])
    assert "ManagedPolicyArns" not in managed["Resources"]["Role"]["Properties"]
    inline = without(template, found["Role/Inline/0"])
    assert "Policies" not in inline["Resources"]["Role"]["Properties"]
    assert "Url" not in without(template, found["Url"])["Resources"]
    # each took away that one grant only
    for changed in (managed, inline):
        assert len(grants(changed)) == len(found) - 1


def test_references_render_as_substitutions() -> None:
    assert render({"Ref": "Machine"}) == "${Machine}"
    assert render(QUEUE_ARN) == "${Queue.Arn}"
    assert render({"Fn::Join": ["", [QUEUE_ARN, ":*"]]}) == "${Queue.Arn}:*"


def test_the_report_is_read_back_with_each_verdict() -> None:
    found = by_key(small_template())
    results = [
        Result(found["RoleDefaultPolicy/1"], "tests/x.py::test_y", "boom", 1.0),
        Result(found["OtherDefaultPolicy/0"], None, "", 2.0),
        *[Result(grant, None, "", 1.0) for grant in action_grants(found["RoleDefaultPolicy/0"])],
    ]
    text = report(results, [], 60)
    rows = table_rows(text)
    assert rows["RoleDefaultPolicy/1"]["result"] == "caught: `tests/x.py::test_y`"
    # xray on a Lambda role: the service uses it, the emulation does not model it
    assert rows["OtherDefaultPolicy/0"]["result"] == (
        "not caught: Lambda sends the function's X-Ray traces"
    )
    assert rows["RoleDefaultPolicy/0/sqs:DeleteMessage"]["result"] == f"not caught: {UNEXPLAINED}"
    assert rows["RoleDefaultPolicy/0/sqs:DeleteMessage"]["actions"] == "`sqs:DeleteMessage`"
    assert previous_catchers(text) == {"RoleDefaultPolicy/1": "tests/x.py::test_y"}


@pytest.mark.parametrize("text", ["a|b", "`x`|`y`"])
def test_a_cell_with_a_bar_is_read_back_whole(text: str) -> None:
    template = small_template()
    template["Resources"]["RoleDefaultPolicy"]["Properties"]["PolicyDocument"]["Statement"][1][
        "Sid"
    ] = text
    grant = by_key(template)["RoleDefaultPolicy/1"]
    rows = table_rows(report([Result(grant, None, "", 1.0)], [], 1))
    assert rows["RoleDefaultPolicy/1"]["statement"] == text
