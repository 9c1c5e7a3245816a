"""Provider credentials in Secrets Manager, one secret per provider secret in the channel
registry (channels of one provider share theirs): created by the stack with placeholders
(or referenced by name from context), filled in by the operator, read by those channels'
notifiers only."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from escalator.channels import CHANNELS
from escalator.channels.base import ProviderSecret
from escalator.config import PLACEHOLDER
from infra.settings import StackSettings


def provider_secrets(
    scope: Construct, settings: StackSettings
) -> dict[str, secretsmanager.ISecret]:
    """The secret of each channel, by channel name; channels that declare the same secret
    share one. A created secret holds ``set-me`` placeholders (and a random value for its
    generated key) that the notifier refuses until they are replaced."""
    secrets: dict[str, secretsmanager.ISecret] = {}
    made: dict[str, tuple[ProviderSecret, secretsmanager.ISecret]] = {}
    for name, channel in CHANNELS.items():
        spec = channel.secret
        if spec is None:
            continue
        if spec.name not in made:
            made[spec.name] = (spec, _secret(scope, spec, settings.existing_secrets.get(name)))
        elif made[spec.name][0] != spec:
            raise ValueError(f"two different provider secrets are named {spec.name}")
        secrets[name] = made[spec.name][1]
    return secrets


def _secret(scope: Construct, spec: ProviderSecret, existing: str | None) -> secretsmanager.ISecret:
    """The secret named ``existing``, or a new one with placeholders."""
    if existing:
        return secretsmanager.Secret.from_secret_name_v2(scope, spec.name, existing)
    placeholders = {key: PLACEHOLDER for key in spec.fields.values() if key != spec.generated}
    return secretsmanager.Secret(
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


# What a function that reads a secret calls: GetSecretValue, and nothing else
# (escalator.config.read_secret). CDK's grant_read adds DescribeSecret, which nothing here
# calls; GetSecretValue needs no other permission for a secret under the AWS managed key
# (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html,
# "Required permissions"). Measured: docs/least-privilege.md.
SECRET_READ_ACTIONS = ("secretsmanager:GetSecretValue",)


def grant_secret_value(secret: secretsmanager.ISecret, grantee: iam.IGrantable) -> iam.Grant:
    """Let ``grantee`` read the secret's value, and nothing else of it."""
    if secret.encryption_key is not None:
        raise ValueError(
            f"{secret.node.path} has a key of its own: reading it needs kms:Decrypt on that"
            " key too (grant it here, and measure it: make least-privilege)"
        )
    # (as grant_read names it: a secret referenced by name has no full ARN, and its ARN
    # ends in six random characters)
    arn = secret.secret_full_arn or f"{secret.secret_arn}-??????"
    return iam.Grant.add_to_principal(
        grantee=grantee, actions=list(SECRET_READ_ACTIONS), resource_arns=[arn]
    )
