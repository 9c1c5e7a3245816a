"""Provider credentials in Secrets Manager, one secret per channel that has a provider
secret in the registry: created by the stack with placeholders (or referenced by name
from context), filled in by the operator, read by that channel's notifier only."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from escalator.channels import CHANNELS
from escalator.config import PLACEHOLDER
from infra.settings import StackSettings


def provider_secrets(
    scope: Construct, settings: StackSettings
) -> dict[str, secretsmanager.ISecret]:
    """The secret of each channel, by channel name. A created secret holds ``set-me``
    placeholders (and a random value for its generated key) that the notifier refuses
    until they are replaced."""
    secrets: dict[str, secretsmanager.ISecret] = {}
    for name, channel in CHANNELS.items():
        spec = channel.secret
        if spec is None:
            continue
        existing = settings.existing_secrets.get(name)
        if existing:
            secrets[name] = secretsmanager.Secret.from_secret_name_v2(scope, spec.name, existing)
            continue
        placeholders = {key: PLACEHOLDER for key in spec.fields.values() if key != spec.generated}
        secrets[name] = secretsmanager.Secret(
            scope,
            spec.name,
            description=f"Escalator {spec.name} credentials: replace every '{PLACEHOLDER}'",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps(placeholders),
                generate_string_key=spec.generated,
                exclude_punctuation=True,
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
    return secrets
