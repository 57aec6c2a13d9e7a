"""What the Functions host does around an HTTP function: the request body it passes on, the answer it writes.

Request: the host (4.x, gRPC workers) copies the body into the invocation only when the request
has a `Content-Length` above 0; a body sent without one (chunked transfer) reaches the function
empty, and the Python worker hands it over as `b""`.
Answer: the worker encodes the `func.HttpResponse` with azure.functions' `HttpResponseConverter`
(which adds a Content-Type only when the function set none), and the host writes it unchanged:
the status, Content-Type as given, every other header added as given, the body's bytes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from azure.functions.http import HttpResponseConverter


def wire_answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) the host sends for a function's `func.HttpResponse`."""
    http = HttpResponseConverter.encode(response, expected_type=None).value
    if http.get("cookies"):
        raise ValueError("Set-Cookie is not part of the relay's answers")
    headers = [(name, datum.value) for name, datum in http["headers"].items()]
    return int(http["status_code"].value), headers, http["body"].value or b""


def to_aiohttp(response: Any) -> web.Response:
    """The aiohttp response carrying exactly what the host would send for `response`."""
    status, headers, body = wire_answer(response)
    out = web.Response(status=status, body=body)
    for name, value in headers:
        if name.lower() == "content-type":
            out.headers["Content-Type"] = value
        else:
            out.headers.add(name, value)
    return out


async def request_body(request: web.Request, limit: int) -> bytes:
    """The body the function sees: none without a Content-Length (as in Azure), else at most
    limit+1 bytes, enough for the function to see that it is too large."""
    if not request.content_length:
        return b""
    chunks, size = [], 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
