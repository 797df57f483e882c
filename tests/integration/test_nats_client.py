"""Connecting to NATS: a missing server is a readable error, a connected client reconnects forever."""

from __future__ import annotations

import pytest

from services.common.errors import ConfigurationError
from services.common.nats_client import connect
from services.common.settings import NatsSettings
from services.runtime.processes import free_port

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
