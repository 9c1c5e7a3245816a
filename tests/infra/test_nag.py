"""cdk-nag's AwsSolutions checks: no unsuppressed error, and every suppression has a reason."""

from __future__ import annotations

import json

from devstack.emulation.template import shared_nag_findings


def test_aws_solutions_checks_find_no_unsuppressed_error() -> None:
    # (checked by the session's synthesis, after its templates: the CDK is loaded there)
    findings = shared_nag_findings()

    assert findings["errors"] == []
    assert findings["warnings"] == []
    assert findings["suppressions"], "the stack records its accepted findings"
    for suppression in findings["suppressions"]:
        assert len(suppression["reason"]) >= 40, json.dumps(suppression)
