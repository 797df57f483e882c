"""The bundled NATS holds the topology the chart configures (defect: err 10047 crash-loops).

A real nats-server gets the JetStream store limit the chart hands the NATS subchart and the
credentials of the chart's generated Secret; ``ensure_topology()`` runs with the stream settings
of the rendered ConfigMap, exactly as every service does at start-up.
"""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import httpx
import pytest
from nats.js.errors import APIError

from services.common.errors import ConfigurationError
from services.common.nats_client import connect
from services.common.settings import NatsSettings, StreamSettings
from services.common.topology import (
    AUDIO_RECEIVED,
    AUDIO_STREAM,
    DISPATCHER_CONSUMER,
    ensure_topology,
    reserved_bytes,
)
from tests.charts.conftest import RELEASE, find, one, render
from tests.charts.nats_server import ConfiguredNatsServer

pytestmark = [pytest.mark.nats]


def chart_nats(values: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(ConfigMap data, NATS Secret data) of a render: what every service and Job is given."""
    objects = render(values)
    config = next(cm["data"] for cm in find(objects, "ConfigMap") if "KUBESCRIBE_STREAM_MAX_BYTES" in cm["data"])
    return config, one(objects, "Secret", f"{RELEASE}-nats-auth")["stringData"]


def stream_settings(config: dict[str, str]) -> StreamSettings:
    prefix = "KUBESCRIBE_STREAM_"
    return StreamSettings(**{k.removeprefix(prefix).lower(): v for k, v in config.items() if k.startswith(prefix)})


def store_limit(values: dict[str, Any]) -> str:
    """What the chart gives the NATS subchart as max_file_store (the chart's default values)."""
    import yaml

    from tests.charts.conftest import CHART

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["nats"]["config"]["jetstream"]["fileStore"]
    return str(values.get("maxSize") or defaults["maxSize"])


def chart_server(tmp_path, secret: dict[str, str], max_file_store: str, password: str | None = None):
    """A nats-server with the chart's user and (unless overridden) its generated password."""
    return ConfiguredNatsServer(
        tmp_path / "js",
        max_file_store=max_file_store,
        user=secret["KUBESCRIBE_NATS_USER"],
        password=password or secret["KUBESCRIBE_NATS_PASSWORD"],
    )


def client_settings(server: ConfiguredNatsServer, secret: dict[str, str]) -> NatsSettings:
    """What a service gets from the chart's Secret, pointed at the test server."""
    user, password = secret["KUBESCRIBE_NATS_USER"], secret["KUBESCRIBE_NATS_PASSWORD"]
    return NatsSettings(url=server.url, user=user, password=password)


async def _topology(server: ConfiguredNatsServer, secret: dict[str, str], streams: StreamSettings) -> list[str]:
    nc = await connect(client_settings(server, secret), name="chart-topology")
    try:
        return await ensure_topology(nc.jetstream(), streams)
    finally:
        await nc.close()


async def test_default_chart_topology_fits_the_bundled_store(tmp_path):
    config, secret = chart_nats({})
    streams = stream_settings(config)
    with chart_server(tmp_path, secret, store_limit({})) as server:
        created = await _topology(server, secret, streams)
        assert {"AUDIO", "TRANSCRIPTS", "SUMMARIES", "FAILED", "audio", "transcripts", "summaries"} <= set(created)
        reserved = server.jsz()["reserved_storage"]
        assert reserved == reserved_bytes(streams)  # what the chart's render-time check adds up


async def test_the_old_default_store_really_fails_and_the_render_says_why(tmp_path):
    """20Gi (the old default) cannot hold it: nats-server refuses (10047, which the services turn into
    one readable line naming the sum), and the chart now fails first."""
    small = {"nats": {"config": {"jetstream": {"fileStore": {"maxSize": "20Gi", "pvc": {"size": "20Gi"}}}}}}
    with pytest.raises(helm.HelmError, match=r"JetStream: the topology reserves \d+ bytes .*maxSize is \d+ bytes"):
        render(small)
    config, secret = chart_nats({})
    with chart_server(tmp_path, secret, "20Gi") as server, pytest.raises(ConfigurationError) as refused:
        await _topology(server, secret, stream_settings(config))
    assert isinstance(refused.value.__cause__, APIError) and refused.value.__cause__.err_code == 10047
    assert "cannot reserve the topology's 27.0 GiB" in str(refused.value)


def test_the_render_check_adds_up_exactly_what_the_topology_reserves():
    """The chart cannot import the topology: this keeps its sum equal to ``reserved_bytes``."""
    config, _ = chart_nats({})
    needed = reserved_bytes(stream_settings(config))

    def store(max_size: int) -> dict[str, Any]:
        size = f"{max_size // 1024}Ki"  # exact: both sums are whole KiB
        return {"nats": {"config": {"jetstream": {"fileStore": {"maxSize": size, "pvc": {"size": "64Gi"}}}}}}

    render(store(needed))
    with pytest.raises(helm.HelmError, match=rf"JetStream: the topology reserves {needed} bytes"):
        render(store(needed - 1024))


async def test_the_server_refuses_clients_without_the_chart_credentials(tmp_path):
    _, secret = chart_nats({})
    streams = StreamSettings(max_bytes=1 << 20, audio_max_bytes=1 << 20)
    # connect() reports a refused login as "cannot reach NATS" (the nats client gives up the same way).
    with (
        chart_server(tmp_path, secret, "1G", password="not-the-password") as server,
        pytest.raises(Exception, match=r"(?i)authorization|cannot reach NATS"),
    ):
        await _topology(server, secret, streams)


async def test_dispatcher_trigger_counts_pending_not_ack_pending(tmp_path):
    """KEDA's metrics-api path, evaluated on a real /jsz: undelivered messages only."""
    scaled = next(s for s in find(render(), "ScaledObject") if s["metadata"]["name"].endswith("-dispatcher"))
    meta = scaled["spec"]["triggers"][0]["metadata"]
    _, secret = chart_nats({})
    streams = StreamSettings(max_bytes=1 << 24, audio_max_bytes=1 << 24)
    with chart_server(tmp_path, secret, "1G") as server:
        await _topology(server, secret, streams)
        nc = await connect(client_settings(server, secret), name="keda-path")
        try:
            js = nc.jetstream()
            for i in range(5):
                await js.publish(f"{AUDIO_RECEIVED}.t{i}", b"{}")
            sub = await js.pull_subscribe(AUDIO_RECEIVED + ".>", durable=DISPATCHER_CONSUMER, stream=AUDIO_STREAM)
            held = await sub.fetch(2, timeout=5)  # delivered, not acked: what the dispatcher holds
            assert len(held) == 2
            url = meta["url"].replace(re.match(r"http://([^/]+)", meta["url"]).group(1), server.monitor)
            document = httpx.get(url, timeout=5).json()
            assert _gjson(document, meta["valueLocation"]) == 3
            consumer = _gjson(document, meta["valueLocation"].removesuffix(".num_pending"))
            assert consumer["num_ack_pending"] == 2  # what KEDA's nats-jetstream scaler would add
        finally:
            await nc.close()


def _gjson(document: Any, path: str) -> Any:
    """The subset of GJSON the chart's path uses: dotted keys, indexes and ``#(name=="x")``."""
    node = document
    for part in re.findall(r'#\(name=="[^"]+"\)|[^.]+', path):
        if part.startswith("#("):
            name = json.loads(part[len("#(name==") : -1])
            node = next(item for item in node if item["name"] == name)
        elif part.isdigit():
            node = node[int(part)]
        else:
            node = node[part]
    return node
