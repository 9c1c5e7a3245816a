"""cdk-nag's AwsSolutions checks: no unsuppressed error, and every suppression has a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.xdist_group("cdk")
def test_aws_solutions_checks_find_no_unsuppressed_error(tmp_path: Path) -> None:
    import aws_cdk as cdk
    from aws_cdk.assertions import Annotations, Match
    from cdk_nag import AwsSolutionsChecks

    from infra.stack import EscalatorStack

    app = cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    stack = EscalatorStack(app, "Escalator")
    cdk.Aspects.of(app).add(AwsSolutionsChecks())

    errors = Annotations.from_stack(stack).find_error("*", Match.string_like_regexp(".*"))
    warnings = Annotations.from_stack(stack).find_warning(
        "*", Match.string_like_regexp("AwsSolutions-.*|CdkNagValidationFailure.*")
    )

    assert [(error.id, str(error.entry.data)) for error in errors] == []
    assert [(warning.id, str(warning.entry.data)) for warning in warnings] == []
    suppressions = [
        suppression
        for resource in app.synth().get_stack_by_name("Escalator").template["Resources"].values()
        for suppression in resource.get("Metadata", {})
        .get("cdk_nag", {})
        .get("rules_to_suppress", [])
    ]
    assert suppressions, "the stack records its accepted findings"
    for suppression in suppressions:
        assert len(suppression["reason"]) >= 40, json.dumps(suppression)
