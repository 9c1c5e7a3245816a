"""E-mail over SMTP; the destination is one e-mail address."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from escalator.channels.base import Channel


def target_problem(address: str) -> str | None:
    """Why ``address`` is not a deliverable-looking e-mail address, or ``None``."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"is not a valid e-mail address ({exc})"
    return None


CHANNEL = Channel(name="email", target_field="email", target_problem=target_problem)
