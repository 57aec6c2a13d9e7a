"""A CIJ that misbehaves at the byte level: a raw asyncio TCP server, so that the status line, the
headers and the framing are whatever a test (or Hypothesis, through `misbehaviours()`) says."""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass, field

from hypothesis import strategies as st

MAX_REQUEST_HEAD = 64 * 1024
MAX_WRITES = 4096  # a body is sent in at most this many writes (small ones only for small bodies)
_FILL = b"x" * 65536  # every body is cut from this one buffer: the fake allocates next to nothing


@dataclass(frozen=True)
class Misbehaviour:
    """How to answer: a raw status line and headers, a body framed one way or another, sent at some
    pace, and optionally a reset, a close or a hang at some point of the answer."""

    status_line: bytes = b"HTTP/1.1 202 Accepted"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body_size: int = 0
    framing: str = "length"  # "length", "chunked", "eof" (no length: until close), "short" (length lies)
    chunk: int = 65536  # bytes per write
    pause: float = 0.0  # seconds between writes of the body
    cut: str | None = None  # "reset", "close" or "hang"
    cut_at: str = "start"  # "start" (nothing sent), "head" (after the status line), "body" (mid-body)

    def head(self) -> bytes:
        """The status line and headers as sent, framing headers included."""
        lines = [self.status_line, *(name + b": " + value for name, value in self.headers)]
        if self.framing == "chunked":
            lines.append(b"Transfer-Encoding: chunked")
        elif self.framing == "length":
            lines.append(b"Content-Length: %d" % self.body_size)
        elif self.framing == "short":
            lines.append(b"Content-Length: %d" % (self.body_size + 1000))
        return b"\r\n".join(lines) + b"\r\n\r\n"


ACCEPT = Misbehaviour()


@dataclass
class HostileCIJ:
    """Answers every request on every connection with `behaviour` (the request itself is read and
    thrown away); counts requests and connections."""

    behaviour: Misbehaviour = ACCEPT
    requests: int = 0
    connections: int = 0
    port: int = 0
    _server: asyncio.AbstractServer | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The endpoint, ending in `/`."""
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> HostileCIJ:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def drop_connections(self) -> None:
        """Abort every open connection (between examples: a hang must not outlive its example)."""
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while await self._read_request(reader):
                self.requests += 1
                if not await self._answer(reader, writer, self.behaviour):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_REQUEST_HEAD:
            return False
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        await reader.readexactly(length)
        return True

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, how: Misbehaviour
    ) -> bool:
        """Send one answer; False when the connection must not carry another."""
        if how.cut and how.cut_at == "start":
            return await self._cut(reader, writer, how.cut)
        head = how.head()
        if how.cut and how.cut_at == "head":
            writer.write(head[: max(1, len(head) // 2)])
            await writer.drain()
            return await self._cut(reader, writer, how.cut)
        writer.write(head)
        await writer.drain()
        sent, cut_after = 0, how.body_size // 2 if how.cut else None
        chunk = max(how.chunk, -(-how.body_size // MAX_WRITES))
        while sent < how.body_size:
            if cut_after is not None and sent >= cut_after:
                return await self._cut(reader, writer, how.cut or "close")
            size = min(chunk, how.body_size - sent, len(_FILL))
            piece = memoryview(_FILL)[:size]
            if how.framing == "chunked":
                writer.write(b"%x\r\n" % size)
                writer.write(piece)
                writer.write(b"\r\n")
            else:
                writer.write(piece)
            await writer.drain()
            sent += size
            await asyncio.sleep(how.pause)  # yields even at 0: the relay shares this loop
        if how.cut:
            return await self._cut(reader, writer, how.cut)
        if how.framing == "chunked":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        if how.framing in ("eof", "short"):
            writer.close()
            return False
        return True

    @staticmethod
    async def _cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: str) -> bool:
        if cut == "hang":  # until the client gives up and closes (or the test drops the connection)
            while await reader.read(65536):
                pass
        if cut == "reset":  # SO_LINGER 0: the close sends RST, not FIN
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort() if cut == "reset" else writer.close()
        return False


# --- what Hypothesis draws ---------------------------------------------------------------------

STATUSES = (
    0, 1, 42, 99, 100, 101, 102, 103, 199, 200, 201, 202, 203, 204, 205, 206, 299, 300, 301, 302,
    303, 304, 307, 308, 399, 400, 401, 403, 404, 405, 407, 408, 409, 410, 413, 418, 421, 425, 429,
    431, 451, 499, 500, 501, 502, 503, 504, 505, 507, 511, 520, 599, 600, 700, 999, 1000, 65535,
)  # fmt: skip
RETRY_AFTER = (
    "0", "1", "5", "120", "3600", "3601", "86400", "9" * 40, "9" * 5000, "-1", "+5", " 7 ", "1.5",
    "1e3", "0x10", "١٢", "２", "²", "𝟗", "NaN", "inf", "",
    "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 +0100", "Mon, 01 Jan 0001 00:00:00 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994", "Tue, 01 Dec 2026 12:00:00 -9959", "Tue, 01 Dec 2026 99:99:99 GMT",
    "Tue, 32 Foo 20260 12:00:00 GMT", "Tue, 01 Dec 2026 12:00:00",
)  # fmt: skip
HEADER_NAMES = (
    b"Retry-After", b"Content-Type", b"Set-Cookie", b"Location", b"Content-Encoding", b"Connection",
    b"Keep-Alive", b"Transfer-Encoding", b"Content-Length", b"Upgrade", b"Trailer", b"X-Ms-Request-Id",
    b"retry-after", b"RETRY-AFTER",
)  # fmt: skip


def _header_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


header_values = st.one_of(
    st.sampled_from(RETRY_AFTER).map(_header_bytes),
    st.text(max_size=40).map(_header_bytes),
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.integers(8_000, 70_000).map(lambda n: b"9" * n),  # around aiohttp's 8190-byte field limit
    st.sampled_from([b"gzip", b"br", b"chunked", b"close", b"websocket", b"-1", b"1, 2", b"text/html"]),
)
header_names = st.one_of(
    st.sampled_from(HEADER_NAMES),
    st.text(max_size=12).map(_header_bytes).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
reasons = st.one_of(
    st.sampled_from([b"OK", b"Accepted", b"", b"Service Unavailable"]),
    st.text(max_size=30).map(_header_bytes).filter(lambda b: b"\r" not in b and b"\n" not in b),
)


@st.composite
def status_lines(draw: st.DrawFn) -> bytes:
    """Mostly well formed, with any status number; sometimes not HTTP at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(min_size=1, max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 ", b"ICY"]))
    status = draw(
        st.one_of(st.sampled_from(STATUSES), st.sampled_from([202, 429, 503, 504]), st.integers(0, 99999))
    )
    return version + b" " + str(status).encode() + b" " + draw(reasons)


@st.composite
def misbehaviours(draw: st.DrawFn) -> Misbehaviour:
    """Anything a broken or hostile CIJ (or a proxy in front of it) could send back."""
    cut = draw(st.sampled_from([None] * 6 + ["reset", "close", "hang"]))
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=4))
    retry_after = draw(
        st.one_of(st.none(), st.sampled_from(RETRY_AFTER), st.sampled_from(RETRY_AFTER), st.text(max_size=20))
    )
    if retry_after is not None:  # the header the relay reads: present in two draws of three
        headers.insert(draw(st.integers(0, len(headers))), (b"Retry-After", _header_bytes(retry_after)))
    return Misbehaviour(
        status_line=draw(status_lines()),
        headers=tuple(headers),
        body_size=draw(
            st.one_of(
                st.sampled_from([0, 1, 4096, 4097, 65537, 1_000_000, 16_000_000]),
                st.integers(0, 16_000_000),
            )
        ),
        framing=draw(st.sampled_from(["length", "length", "chunked", "eof", "short"])),
        chunk=draw(st.sampled_from([1, 100, 4096, 65536])),
        pause=draw(st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.2])),
        cut=cut,
        cut_at=draw(st.sampled_from(["start", "head", "body"])),
    )
