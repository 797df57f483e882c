"""The asyncio network backend under httpx against real servers: what the anyio one gives callers
(streams, pooled connections, a server that closes an idle one, TLS) and the same httpx errors."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from services.common.http_transport import AsyncioBackend, asyncio_transport
from services.common.openai_stream import read_completion_stream
from services.common.settings import LlmSettings
from services.runtime.processes import free_port
from services.runtime.sim import SimConfig, SimLlmServer
from services.summarizer.client import ChatClient

LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=8)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, list]]:
    """A TCP server on loopback running ``handler`` per connection; yields its URL and the connections seen."""
    seen: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            await handler(reader, writer)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", seen
    finally:
        server.close()
        for writer in seen:
            writer.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def _client(base: str, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, transport=asyncio_transport(limits=LIMITS, **kwargs), timeout=5)


def test_the_summarizer_client_reads_through_the_asyncio_backend() -> None:
    client = ChatClient(LlmSettings(base_url="http://127.0.0.1:9/v1"))
    pool = client.http._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool._network_backend, AsyncioBackend)


async def test_a_stream_is_read_whole_and_its_connection_reused() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 32}
    with SimLlmServer(SimConfig(model="m", itl=0.001)) as sim:
        async with _client(sim.base_url + "/") as http:
            for _ in range(3):
                async with http.stream("POST", "chat/completions", json=body) as response:
                    completion = await read_completion_stream(response, 0.0)
                assert completion.done and completion.tokens_out == 32 and completion.text
            pool = http._transport._pool  # type: ignore[attr-defined]
            assert isinstance(pool._network_backend, AsyncioBackend)
            assert len(pool.connections) == 1  # three streams, one connection


async def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed() -> None:
    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive, then closed anyway
        await writer.drain()

    async with raw_server(answer_then_close) as (url, seen), _client(url) as http:
        assert (await http.get("/")).text == "ok"
        await asyncio.sleep(0.1)  # the close reaches the pooled connection
        assert (await http.get("/")).text == "ok"
        assert len(seen) == 2


async def test_errors_are_httpx_errors_as_with_anyio() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(30)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    async with _client(f"http://127.0.0.1:{free_port()}") as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/")
    async with raw_server(never_answer) as (url, _), _client(url) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/", timeout=0.3)
    async with raw_server(hang_up) as (url, _), _client(url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
async def test_tls_to_an_https_gateway(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
            await writer.drain()

    async with raw_server(answer, server_context) as (url, seen):
        async with _client(url, verify=ssl.create_default_context(cafile=str(cert))) as http:
            assert (await http.get("/")).text == "secure"
            assert (await http.get("/")).text == "secure"
            assert len(seen) == 1
        async with _client(url) as http:  # the system's CAs do not know the test certificate
            with pytest.raises(httpx.ConnectError):
                await http.get("/")
