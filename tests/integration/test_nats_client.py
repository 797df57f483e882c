"""Connecting to NATS: a missing server is a readable error, a connected client reconnects forever."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from services.common.errors import ConfigurationError
from services.common.nats_client import connect
from services.common.settings import NatsSettings
from services.runtime.nats_server import EmbeddedNatsServer, NatsAuth
from services.runtime.processes import free_port, wait_until_async

pytestmark = pytest.mark.nats


async def test_missing_server_is_a_configuration_error_naming_the_url() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigurationError, match=f"cannot reach NATS at {url}"):
        await connect(NatsSettings(url=url, connect_timeout=0.5))


async def test_connected_client_reconnects_forever(nats_settings: NatsSettings) -> None:
    client = await connect(nats_settings)
    try:
        assert client.is_connected
        assert client.options["max_reconnect_attempts"] == -1
    finally:
        await client.close()


async def test_an_authenticated_server_refuses_clients_without_its_credentials(tmp_path: Path) -> None:
    auth = NatsAuth.load_or_create(tmp_path / "secrets")
    assert NatsAuth.load_or_create(tmp_path / "secrets") == auth  # generated once, then kept
    for private in (tmp_path / "secrets" / "nats.json", auth.server_config()):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with EmbeddedNatsServer(tmp_path / "store", auth=auth) as server:
        assert auth.password not in " ".join(server.argv())  # ps shows argv: the password is in the config file
        anonymous = NatsSettings(url=server.url, connect_timeout=0.5)
        wrong = NatsSettings(url=server.url, connect_timeout=0.5, user=auth.user, password="wrong")
        for settings in (anonymous, wrong):
            with pytest.raises(ConfigurationError, match="cannot reach NATS") as caught:
                await connect(settings)
            assert "wrong" not in str(caught.value)
        # The services' way (user and password from the environment), and a URL carrying them.
        for settings in (NatsSettings(url=server.url, user=auth.user, password=auth.password),
                         NatsSettings(url=server.client_url)):  # fmt: skip
            client = await connect(settings)
            try:
                await client.jetstream().account_info()
            finally:
                await client.close()
        with pytest.raises(ConfigurationError) as caught:
            await connect(NatsSettings(url=server.client_url.replace(auth.password, "nope"), connect_timeout=0.5))
        assert "nope" not in str(caught.value)  # the URL is logged without its credentials


async def test_a_client_rides_through_a_sigkilled_server_restarted_on_the_same_port(tmp_path: Path) -> None:
    """What the stack's supervisor does to nats-server: the client reconnects, JetStream state is kept."""
    server = EmbeddedNatsServer(tmp_path / "store")
    server.start()
    try:
        client = await connect(NatsSettings(url=server.url))
        js = client.jetstream()
        await js.add_stream(name="S", subjects=["s.>"])
        await js.publish("s.1", b"before")
        assert server.process is not None and server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        await wait_until_async(lambda: not client.is_connected, "the client to notice", 10)
        server.process.start()  # the same spec: same port, same store directory
        server.wait_ready()
        await wait_until_async(lambda: client.is_connected, "the client to reconnect", 15)
        await js.publish("s.2", b"after")
        assert (await js.stream_info("S")).state.messages == 2
        await client.close()
    finally:
        server.stop()


async def test_the_jetstream_store_cap_does_not_depend_on_the_free_disk(nats_server: EmbeddedNatsServer) -> None:
    """nats-server's default cap is 75 % of the free disk; the topology reserves 27 GiB against it,
    so a machine with less than 36 GB free refused the audio store at start (CI did, once)."""
    import httpx

    from services.common.settings import StreamSettings
    from services.common.topology import reserved_bytes
    from services.runtime.nats_server import FILE_STORE_CAP

    varz = httpx.get(f"{nats_server.monitor_url}/varz", timeout=5).json()
    assert varz["jetstream"]["config"]["max_storage"] == FILE_STORE_CAP
    assert 10 * reserved_bytes(StreamSettings()) <= FILE_STORE_CAP


async def test_limits_beyond_the_store_cap_are_one_readable_configuration_error(tmp_path: Path) -> None:
    from services.common.settings import StreamSettings
    from services.common.topology import ensure_topology
    from services.runtime.nats_server import FILE_STORE_CAP

    with EmbeddedNatsServer(tmp_path / "store") as server:
        client = await connect(NatsSettings(url=server.url))
        try:
            too_big = StreamSettings(audio_max_bytes=2 * FILE_STORE_CAP)
            with pytest.raises(ConfigurationError, match=r"cannot reserve the topology.s 2055\.0 GiB"):
                await ensure_topology(client.jetstream(), too_big)
        finally:
            await client.close()
