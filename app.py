#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth`` / ``npx cdk deploy`` from the repository root."""

from __future__ import annotations

import aws_cdk as cdk

from infra.stack import EscalatorStack

app = cdk.App()
EscalatorStack(app, app.node.try_get_context("stack_name") or "Escalator")
app.synth()
