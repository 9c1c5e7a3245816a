"""Provider credentials in Secrets Manager: created by the stack with placeholders (or
referenced by name from context), filled in by the operator, read by the notifiers."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from escalator.config import PLACEHOLDER
from infra.functions import ProviderSecret
from infra.settings import StackSettings

# channel -> (secret id, variable naming it to the notifier, JSON keys, generated key)
_PROVIDERS = {
    "phone": ("Twilio", "TWILIO_SECRET_ARN", ("account_sid",), "auth_token"),
    "email": ("Smtp", "SMTP_SECRET_ARN", ("username",), "password"),
    "pubnub": ("PubNub", "PUBNUB_SECRET_ARN", ("subscribe_key",), "publish_key"),
}


def provider_secrets(scope: Construct, settings: StackSettings) -> dict[str, ProviderSecret]:
    """One secret per provider. A created secret holds ``set-me`` placeholders (and a
    random value for the secret field) that the notifier refuses until they are replaced."""
    names = {
        "phone": settings.twilio_secret_name,
        "email": settings.smtp_secret_name,
        "pubnub": settings.pubnub_secret_name,
    }
    secrets: dict[str, ProviderSecret] = {}
    for channel, (secret_id, variable, keys, generated) in _PROVIDERS.items():
        existing = names[channel]
        if existing:
            secret = secretsmanager.Secret.from_secret_name_v2(scope, secret_id, existing)
        else:
            secret = secretsmanager.Secret(
                scope,
                secret_id,
                description=f"Escalator {secret_id} credentials: replace every '{PLACEHOLDER}'",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template=json.dumps(dict.fromkeys(keys, PLACEHOLDER)),
                    generate_string_key=generated,
                    exclude_punctuation=True,
                ),
                removal_policy=RemovalPolicy.RETAIN,
            )
        secrets[channel] = ProviderSecret(secret=secret, variable=variable)
    return secrets
