"""Status-callback Lambda (a function URL, outside the VPC): providers report on each
delivery here (Twilio on a call's progress, a message's fate). The channel the callback
is of checks its signature; a verified report goes to the recorder function in the VPC.

Input: a function URL event (payload 2.0); output its HTTP response.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from escalator import bootstrap
from escalator.logs import logger
from escalator.model import SignedCallback


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return bootstrap.call_status_receiver().receive(signed_callback(event)).to_event()


def signed_callback(event: dict[str, Any]) -> SignedCallback:
    """The URL the provider called (what it signed), the form fields and the headers."""
    headers = {
        str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()
    }
    scheme = headers.get("x-forwarded-proto", "https")
    host = (event.get("requestContext") or {}).get("domainName") or headers.get("host", "")
    query = event.get("rawQueryString") or ""
    url = f"{scheme}://{host}{event.get('rawPath') or '/'}" + (f"?{query}" if query else "")
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8", errors="replace")
    params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    return SignedCallback(url=url, params=params, headers=headers)
