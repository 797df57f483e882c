"""An httpx transport whose sockets are plain asyncio streams, for clients that read long streams.

httpx reaches the network through httpcore, and httpcore through anyio on asyncio: every read of
a streamed body enters an anyio cancel scope (``fail_after``) and an exception map, then anyio's
socket stream, before h11 sees the bytes. A streamed chat completion is one read per SSE chunk,
and vLLM sends one chunk per token by default, so that per-read cost is paid per generated token.
Measured here (``bench/summarizer_stream.py``): the anyio path costs ~140 µs of the summarizer's
CPU per chunk, this one ~95 µs, with the same h11 and httpx layers above it.

httpcore documents network backends as its extension point (``AsyncConnectionPool(network_backend=…)``);
httpx does not expose it, so :func:`asyncio_transport` builds the ordinary
:class:`httpx.AsyncHTTPTransport` (its request/response mapping and its mapping of httpcore's
exceptions to httpx's stay as they are) and gives it a pool on this backend. Should a later httpx
lay its transport out differently, the transport is returned unchanged (a log line says so) and
only the saving is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

logger = logging.getLogger(__name__)

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
STREAM_LIMIT = 1 << 20
"""StreamReader buffer: above httpcore's 64 KiB reads, so a read never waits on a full buffer."""


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], os_error: type[Exception], timeout: float | None) -> Iterator[None]:
    """``timeout`` on the block and asyncio's errors as httpcore's, which httpx maps to its own
    (``httpx.ReadTimeout``, ``httpx.ConnectError``, ...): callers see the anyio backend's errors."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or f"timed out after {timeout}s") from exc
    except (OSError, EOFError) as exc:
        raise os_error(str(exc) or type(exc).__name__) from exc


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection: an asyncio StreamReader/StreamWriter pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError, timeout):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError, timeout):
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        """TLS on this connection (an ``https`` gateway): StreamWriter.start_tls, Python 3.11+."""
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError, timeout):
                async with asyncio.timeout(timeout):
                    await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except BaseException:
            await self.aclose()
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks before reusing a pooled connection: readable while idle means the
            # server closed it (or sent what it should not), so the pool drops it. asyncio has
            # already read whatever arrived, so the reader's state, not the socket's, tells.
            return self._reader.at_eof() or self._writer.is_closing()
        key = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        return self._writer.get_extra_info(key)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections as asyncio streams (TCP_NODELAY is asyncio's default for TCP, as with anyio)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError, timeout):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, local_addr=local, limit=STREAM_LIMIT)
        _apply(writer, socket_options)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[SocketOption] | None = None
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError, timeout):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=STREAM_LIMIT)
        _apply(writer, socket_options)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _apply(writer: asyncio.StreamWriter, options: Iterable[SocketOption] | None) -> None:
    sock: socket.socket | None = writer.get_extra_info("socket")
    if sock is None:
        return
    for option in options or ():
        sock.setsockopt(*option)


def asyncio_transport(*, limits: httpx.Limits, verify: ssl.SSLContext | bool = True) -> httpx.AsyncBaseTransport:
    """An :class:`httpx.AsyncHTTPTransport` (HTTP/1.1, no proxy) on :class:`AsyncioBackend`."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        logger.info("httpx %s lays its transport out differently: streams stay on anyio", httpx.__version__)
        return transport
    ssl_context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=AsyncioBackend(),
    )
    return transport
