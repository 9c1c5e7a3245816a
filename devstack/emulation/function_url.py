"""A Lambda function URL on loopback: each HTTP request becomes a function URL event
(payload format 2.0) for a function invoked through the Lambda API (moto), and the
function's answer becomes the HTTP response, as AWS does it; a request body larger than
6 MB is refused (413) unread, as AWS refuses it; a request the function's resource-based
policy does not allow is refused (403) before the function runs, with AWS's answer."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from botocore.exceptions import ClientError

from devstack.emulation.iam import FUNCTION_URL_FORBIDDEN
from devstack.loopback import LoopbackServer

# A function URL refuses a request larger than Lambda's invocation payload (6 MB).
MAX_REQUEST_BYTES = 6 * 1024 * 1024


class FunctionUrl(LoopbackServer):
    """``url`` serves ``function`` (a name) through ``lambda_client.invoke``.

    ``refusal`` says, for each request, why the function's resource-based policy does not
    allow it (``Permissions.function_url_refusal``: an anonymous request needs
    ``lambda:InvokeFunctionUrl`` and ``lambda:InvokeFunction`` granted to ``*``), or
    ``None``; without it every request is served (moto's own)."""

    def __init__(
        self,
        lambda_client: Any,
        function: str,
        *,
        refusal: Callable[[], str | None] | None = None,
    ) -> None:
        super().__init__(self._serve)
        self._client = lambda_client
        self.function = function
        self._refusal = refusal
        # Why each refused request was refused.
        self.refused: list[str] = []

    @property
    def url(self) -> str:
        return super().url + "/"

    def __enter__(self) -> FunctionUrl:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            # Refused before a byte of the body is read, and the connection closed.
            request.close_connection = True
            _answer(request, 413, "Request Entity Too Large", "text/plain")
            return
        body = request.rfile.read(length).decode("utf-8", errors="replace")
        why = self._refusal() if self._refusal is not None else None
        if why is not None:
            self.refused.append(why)
            forbidden = json.dumps({"Message": FUNCTION_URL_FORBIDDEN})
            error_type = {"x-amzn-ErrorType": "AccessDeniedException"}
            _answer(request, 403, forbidden, "application/json", error_type)
            return
        path, _, query = request.path.partition("?")
        host = request.headers.get("Host", "")
        headers = {name.lower(): value for name, value in request.headers.items()}
        headers["x-forwarded-proto"] = "http"  # AWS's own is https
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "queryStringParameters": dict(urllib.parse.parse_qsl(query)) or None,
            "requestContext": {
                "domainName": host,
                "http": {"method": request.command, "path": path, "sourceIp": "127.0.0.1"},
            },
            "body": body,
            "isBase64Encoded": False,
        }
        try:
            response = self._client.invoke(FunctionName=self.function, Payload=json.dumps(event))
        except ClientError as exc:
            # A throttled function answers 429; any other failure of the service 502.
            throttled = exc.response["Error"]["Code"] == "TooManyRequestsException"
            status = 429 if throttled else 502
            _answer(request, status, "Rate Exceeded." if throttled else "Bad Gateway", "text/plain")
            return
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError") or not isinstance(answer, dict):
            status, content, content_type = 502, "Internal Server Error", "text/plain"
        else:
            status = int(answer.get("statusCode", 200))
            content = str(answer.get("body", ""))
            content_type = (answer.get("headers") or {}).get("Content-Type", "application/json")
        _answer(request, status, content, content_type)


def _answer(
    request: BaseHTTPRequestHandler,
    status: int,
    content: str,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    data = content.encode()
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
