"""The dev server never logs request contents: malformed requests (bad request lines, header lines,
chunk sizes, oversized headers) are logged by what went wrong, never by their bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import leaks, sensitive
from tests.helpers_devserver import DevServer

TOKEN = "devtoken-" + "c3" * 28
EVENT = (
    b'{"TrackingId":"3f2504e0-4f89-41d3-9a0c-0305e82c3302","DeviceToken":"%s","PushNotificationStatus":1}'
    % (TOKEN.encode())
)
MALFORMED = {
    "token in a broken header line": b"POST /api/events HTTP/1.1\r\nHost: x\r\nX-Token "
    + TOKEN.encode()
    + b"\r\n\r\n",
    "token in a header with a control byte": b"POST /api/events HTTP/1.1\r\nHost: x\r\nX-T: "
    + TOKEN.encode()
    + b"\x01\r\n\r\n",
    "token in the request line": b"POST /api/events?" + TOKEN.encode() + b" HTTP/1.1 junk\r\nHost: x\r\n\r\n",
    "token after a bad chunk size": b"POST /api/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\n\r\nzz" + EVENT + b"\r\n0\r\n\r\n",
    "token in an oversized header": b"POST /api/events HTTP/1.1\r\nHost: x\r\nX-Pad: "
    + TOKEN.encode() * 200
    + b"\r\n\r\n",
    "token in a bad method": TOKEN.encode() + b" /api/events HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(log_level="DEBUG") as running:
        yield running


async def send_raw(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_a_malformed_request_is_refused_and_its_bytes_are_not_logged(server, name):
    sensitive(TOKEN)
    answer = await send_raw(server.port, MALFORMED[name])
    assert answer.startswith(b"HTTP/1.") and answer[9:10] == b"4", answer[:200]
    await asyncio.sleep(0.2)  # let the server write its log line
    output = server.output()
    assert leaks(output) == [], output[-2000:]
    assert "Error handling request" in output  # the refusal itself is logged
