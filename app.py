#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth`` / ``npx cdk deploy`` from the repository root.

cdk-nag's AwsSolutions checks run on every synth; accepted findings carry their reason
in ``infra/nag.py``. ``-c nag=false`` turns the checks off.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.stack import EscalatorStack

app = cdk.App()
EscalatorStack(app, app.node.try_get_context("stack_name") or "Escalator")
if str(app.node.try_get_context("nag")).lower() != "false":
    cdk.Aspects.of(app).add(AwsSolutionsChecks())
app.synth()
