"""E-mail over SMTP; the destination is one e-mail address."""

from __future__ import annotations

import functools
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from email_validator import EmailNotValidError, validate_email

from escalator.channels.base import Channel, Notifier
from escalator.errors import PermanentDeliveryError, TransientDeliveryError
from escalator.model import Delivery, Receipt

if TYPE_CHECKING:
    from escalator.config import SmtpSettings


# Pure, and restaurants send the same destinations order after order.
@functools.lru_cache(maxsize=4096)
def target_problem(address: str) -> str | None:
    """Why ``address`` is not a deliverable-looking e-mail address, or ``None``."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"is not a valid e-mail address ({exc})"
    return None


class SmtpMailer:
    """Sends one message per notification, with STARTTLS and login when configured."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def deliver(self, delivery: Delivery) -> Receipt:
        """Send the e-mail. Raises ``TransientDeliveryError``, ``PermanentDeliveryError``."""
        settings = self._settings
        message = EmailMessage()
        message["From"] = settings.mail_from
        message["To"] = delivery.target
        message["Subject"] = settings.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
        message.set_content(settings.body)
        try:
            with smtplib.SMTP(
                settings.host, settings.port, timeout=settings.timeout_seconds
            ) as smtp:
                if settings.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.username:
                    smtp.login(settings.username, settings.password or "")
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentDeliveryError(f"SMTP login refused ({exc.smtp_code})") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            problem = f"SMTP refused the recipient ({', '.join(map(str, codes))})"
            if all(400 <= code < 500 for code in codes):
                raise TransientDeliveryError(problem) from exc
            raise PermanentDeliveryError(problem) from exc
        except smtplib.SMTPResponseException as exc:
            detail = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            problem = f"SMTP answered {exc.smtp_code}: {detail}"
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError(problem) from exc
            raise PermanentDeliveryError(problem) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientDeliveryError(f"cannot talk to the SMTP server: {exc}") from exc
        return Receipt(
            provider_ref=str(message["Message-ID"]), detail={"subject": settings.subject}
        )


def _notifier() -> Notifier:
    from escalator.config import load_smtp_settings  # at cold start of the notifier only

    return SmtpMailer(load_smtp_settings())


CHANNEL = Channel(
    name="email",
    target_field="email",
    target_problem=target_problem,
    task_name="Send e-mail",
    notifier=_notifier,
)
