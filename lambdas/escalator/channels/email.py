"""E-mail over SMTP; the destination is one e-mail address."""

from __future__ import annotations

import functools
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from email_validator import EmailNotValidError, validate_email

from escalator.channels.base import Channel, Notifier, ProviderSecret, innermost
from escalator.config import boolean, integer, present, require, with_secret
from escalator.errors import (
    AmbiguousDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from escalator.model import Delivery, Receipt

# The notifier's environment.
SMTP_HOST = "SMTP_HOST"
SMTP_PORT = "SMTP_PORT"
SMTP_USERNAME = "SMTP_USERNAME"
SMTP_PASSWORD = "SMTP_PASSWORD"  # noqa: S105 - the name of a variable
SMTP_STARTTLS = "SMTP_STARTTLS"
SMTP_TIMEOUT_SECONDS = "SMTP_TIMEOUT_SECONDS"
MAIL_FROM = "MAIL_FROM"
MAIL_SUBJECT = "MAIL_SUBJECT"
MAIL_BODY = "MAIL_BODY"
SECRET = ProviderSecret(
    name="Smtp",
    variable="SMTP_SECRET_ARN",
    fields={SMTP_USERNAME: "username", SMTP_PASSWORD: "password"},
    generated="password",
)


@dataclass(frozen=True)
class SmtpSettings:
    """E-mail over SMTP, with STARTTLS and login when configured."""

    host: str
    mail_from: str
    port: int = 587
    subject: str = "A new order is waiting for confirmation"
    body: str = "A new order is waiting for your confirmation."
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout_seconds: int = 10


def load_settings(environ: Mapping[str, str] | None = None) -> SmtpSettings:
    """SMTP settings; the login may come from ``SMTP_SECRET_ARN``."""
    env = with_secret(os.environ if environ is None else environ, SECRET.variable, SECRET.fields)
    require(env, SMTP_HOST, MAIL_FROM)
    return SmtpSettings(
        host=env[SMTP_HOST],
        mail_from=env[MAIL_FROM],
        **present(
            port=integer(env, SMTP_PORT),
            subject=env.get(MAIL_SUBJECT) or None,
            body=env.get(MAIL_BODY) or None,
            username=env.get(SMTP_USERNAME) or None,
            password=env.get(SMTP_PASSWORD) or None,
            starttls=boolean(env, SMTP_STARTTLS),
            timeout_seconds=integer(env, SMTP_TIMEOUT_SECONDS),
        ),
    )


# Pure, and restaurants send the same destinations order after order.
@functools.lru_cache(maxsize=4096)
def target_problem(address: str) -> str | None:
    """Why ``address`` is not a deliverable-looking e-mail address, or ``None``."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"is not a valid e-mail address ({exc})"
    return None


@functools.lru_cache(maxsize=4096)
def recipient(address: str) -> str:
    """A usable address as ``email-validator`` normalises it (the domain in lower case)."""
    return str(validate_email(address, check_deliverability=False).normalized)


class _Session(smtplib.SMTP):
    """An SMTP session that knows when the message itself was handed over: once the
    server answered DATA with 354, the content goes out, and from then on a dropped
    connection or a missing reply may mean the server has the message."""

    content_sent = False

    def getreply(self) -> tuple[int, bytes]:
        code, text = super().getreply()
        if code == 354:
            self.content_sent = True
        return code, text


class SmtpMailer:
    """Sends one message per notification, with STARTTLS and login when configured."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def deliver(self, delivery: Delivery) -> Receipt:
        """Send the e-mail. Raises ``TransientDeliveryError`` (never handed over, or the
        server said try later), ``PermanentDeliveryError`` (refused),
        ``AmbiguousDeliveryError`` (the message went out and no answer came back)."""
        settings = self._settings
        message = EmailMessage()
        message["From"] = settings.mail_from
        message["To"] = delivery.target
        message["Subject"] = settings.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
        message.set_content(settings.body)
        session: _Session | None = None
        try:
            session = _Session(settings.host, settings.port, timeout=settings.timeout_seconds)
            if settings.starttls:
                session.starttls(context=ssl.create_default_context())
            if settings.username:
                session.login(settings.username, settings.password or "")
            session.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentDeliveryError(f"SMTP login refused ({exc.smtp_code})") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            answers = "; ".join(f"{code} {_text(reply)}" for code, reply in exc.recipients.values())
            problem = f"SMTP refused the recipient ({answers})"
            if all(400 <= code < 500 for code in codes):
                raise TransientDeliveryError(problem) from exc
            raise PermanentDeliveryError(problem) from exc
        except smtplib.SMTPResponseException as exc:
            # An answer, even to the end of the message data: RFC 5321 4.2.1, "4yz
            # Transient Negative Completion reply: The command was not accepted, and the
            # requested action did not occur. However, the error condition is temporary,
            # and the action may be requested again." (421 "Service not available,
            # closing transmission channel" is one: "This may be a reply to any command
            # if the service knows it must shut down", 4.2.2). 5yz: "The command was not
            # accepted and the requested action did not occur." Only "250 OK" in response
            # to DATA accepts the message (6.1). https://www.rfc-editor.org/rfc/rfc5321
            problem = f"SMTP answered {exc.smtp_code}: {_text(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError(problem) from exc
            raise PermanentDeliveryError(problem) from exc
        except (OSError, smtplib.SMTPException) as exc:
            # No reply once the content went out: the server may have taken the message.
            # RFC 5321 4.5.3.2.6 waits 10 minutes for that reply, since "A spurious
            # timeout at this point would be very wasteful and would typically result in
            # delivery of multiple copies of the message, since it has been successfully
            # sent and the server has accepted responsibility for delivery"; RFC 1047: "If
            # the SMTP conversation is broken at this point, the sending mailer will be
            # forced to re-deliver the message" (a duplicate).
            if session is not None and session.content_sent:
                raise AmbiguousDeliveryError(
                    f"no answer from the SMTP server after the message was sent ({innermost(exc)})"
                    "; it may have been accepted: not retried"
                ) from exc
            raise TransientDeliveryError(f"cannot talk to the SMTP server: {exc}") from exc
        finally:
            if session is not None:
                _quit(session)
        return Receipt(
            provider_ref=str(message["Message-ID"]), detail={"subject": settings.subject}
        )


def _quit(session: smtplib.SMTP) -> None:
    """End the session; the message's fate is settled already, whatever QUIT answers."""
    try:
        session.quit()
    except (OSError, smtplib.SMTPException):
        session.close()


def _notifier() -> Notifier:
    return SmtpMailer(load_settings())


CHANNEL = Channel(
    name="email",
    target_field="email",
    target_problem=target_problem,
    recipient=recipient,
    task_name="Send e-mail",
    notifier=_notifier,
    secret=SECRET,
    settings={
        "smtp_host": SMTP_HOST,
        "smtp_port": SMTP_PORT,
        "smtp_starttls": SMTP_STARTTLS,
        "mail_from": MAIL_FROM,
        "mail_subject": MAIL_SUBJECT,
        "mail_body": MAIL_BODY,
    },
)


def _text(reply: bytes | str) -> str:
    """An SMTP server's reply text (it may quote the address: ``DeliveryError`` masks it)."""
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
