"""The embedded 3-node JetStream cluster (:class:`NatsCluster`): R3 topology, and the loss of the
stream leader ridden through by a publish, a KV compare-and-set and an Object Store read."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.errors import Error as NatsError
from nats.js.errors import KeyWrongLastSequenceError

from services.common.broker import durable_consumers
from services.common.nats_client import connect
from services.common.settings import NatsSettings, StreamSettings
from services.common.topology import (
    AUDIO_BUCKET,
    AUDIO_RECEIVED,
    AUDIO_STREAM,
    KV_BUCKETS,
    STATUS_BUCKET,
    STREAMS,
    ensure_consumers,
    ensure_topology,
    object_store_limits,
)
from services.runtime.nats_server import NatsAuth, NatsCluster
from services.runtime.processes import wait_until_async
from services.runtime.stack import quiet_sink
from services.runtime.supervisor import Supervisor

pytestmark = [pytest.mark.nats, pytest.mark.timeout(180)]


async def stream_leader(js, stream: str = AUDIO_STREAM) -> str:
    """The supervised process name of the node leading ``stream`` (``kubescribe-2`` → ``nats-2``)."""
    info = await js.stream_info(stream)
    assert info.cluster is not None and info.cluster.leader, info.cluster
    return "nats-" + info.cluster.leader.rsplit("-", 1)[1]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[NatsCluster, NatsAuth, Supervisor]]:
    auth = NatsAuth.load_or_create(tmp_path / "secrets")
    nodes = NatsCluster(tmp_path, 3, auth=auth)
    supervisor = Supervisor(sink=quiet_sink, log_dir=tmp_path / "logs")
    try:
        started = [supervisor.start(node.spec(f"nats-{i + 1}"), wait=False) for i, node in enumerate(nodes.nodes)]
        for process in started:
            process.wait_ready()
        yield nodes, auth, supervisor
    finally:
        supervisor.stop_all()


async def test_every_stream_bucket_and_store_is_placed_on_three_peers(cluster) -> None:
    nodes, auth, _ = cluster
    nc = await connect(NatsSettings(url=auth.url(nodes.addresses)), name="cluster-test")
    try:
        js = nc.jetstream()
        created = await ensure_topology(js, StreamSettings(replicas=3))
        assert await ensure_topology(js, StreamSettings(replicas=3)) == [], "a second call changes nothing"
        for stream in ("AUDIO", "TRANSCRIPTS", "SUMMARIES", "FAILED", "KV_recordings", "OBJ_audio"):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3, stream
            assert len(info.cluster.replicas or []) == 2, (stream, info.cluster)
        assert len(created) == len(STREAMS) + len(KV_BUCKETS) + len(object_store_limits(StreamSettings()))
        assert await stream_leader(js) in {"nats-1", "nats-2", "nats-3"}
    finally:
        await nc.close()


async def test_two_replicas_of_every_service_create_their_durables_at_once_on_a_fresh_cluster(cluster) -> None:
    """What ``up --replicas 2`` does at start: notifier-1 once exited here on an unanswered
    CONSUMER.INFO while notifier-2 created the same durable on a cluster seconds old."""
    from services.dispatcher.app import build_app as dispatcher_app
    from services.notifier.app import build_app as notifier_app
    from services.summarizer.app import build_app as summarizer_app

    nodes, auth, _ = cluster
    settings = StreamSettings(replicas=3)
    consumers = [
        pair for build in (dispatcher_app, summarizer_app, notifier_app) for pair in durable_consumers(build().broker)
    ]
    assert {(stream, config.durable_name) for stream, config in consumers} == {
        ("AUDIO", "dispatcher"), ("TRANSCRIPTS", "summarizer"), ("SUMMARIES", "notifier"), ("FAILED", "notifier"),
    }  # fmt: skip
    clients = [await connect(NatsSettings(url=auth.url(nodes.addresses)), name=f"replica-{i}") for i in range(2)]
    try:
        await ensure_topology(clients[0].jetstream(), settings)
        await asyncio.gather(*(ensure_consumers(nc.jetstream(), consumers, settings) for nc in clients))
        js = clients[1].jetstream()
        for stream, config in consumers:
            info = await js.consumer_info(stream, config.durable_name)
            assert info.config.filter_subject == config.filter_subject
            assert info.cluster is not None and info.cluster.leader, (stream, info.cluster)
        await ensure_consumers(js, consumers, settings)  # present: left as they are
    finally:
        for nc in clients:
            await nc.close()


async def test_the_stream_leaders_death_is_ridden_through_by_publish_cas_and_object_reads(cluster) -> None:
    nodes, auth, supervisor = cluster
    nc = await connect(NatsSettings(url=auth.url(nodes.addresses)), name="cluster-test")
    try:
        js = nc.jetstream(timeout=5)
        await ensure_topology(js, StreamSettings(replicas=3))
        audio = await js.object_store(AUDIO_BUCKET)
        await audio.put("clip", b"\x01" * 300_000)
        kv = await js.key_value(STATUS_BUCKET)
        revision = await kv.create("rec-1", b"queued")
        leader = await stream_leader(js)
        victim = next(p for p in supervisor.processes if p.name == leader)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)

        async def published() -> bool:
            ack = await js.publish(AUDIO_RECEIVED, b"{}", headers={"Nats-Msg-Id": "after-leader-death"})
            return ack.seq > 0

        # A publish that reached the dying leader times out: the client retries it, same Msg-Id.
        await wait_until_async(published, "a publish after the leader's death", 60, interval=0.5, ignore=(NatsError,))
        new_leader = await stream_leader(js)
        assert new_leader != leader

        # Each stream (KV_recordings, OBJ_audio) elects its own leader: until then a request times
        # out, and a client retries it as StatusStore and the services' boundaries do.
        async def cas() -> bool:
            try:
                await kv.update("rec-1", b"dispatched", last=revision)  # against the revision read before
            except KeyWrongLastSequenceError:  # a timed-out try that did land
                assert (await kv.get("rec-1")).value == b"dispatched"
            return True

        await wait_until_async(cas, "a KV compare-and-set", 60, interval=0.5, ignore=(NatsError,))
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.update("rec-1", b"stale", last=revision)
        assert (await kv.get("rec-1")).value == b"dispatched"

        async def read() -> bytes:
            return (await audio.get("clip")).data

        assert await wait_until_async(read, "an Object Store read", 60, interval=0.5, ignore=(NatsError,)) == (
            b"\x01" * 300_000
        )
        victim.start()  # what the supervisor's restart does: same name, same store, same ports
        victim.wait_ready()

        async def caught_up() -> bool:
            info = await js.stream_info(AUDIO_STREAM)
            return all(peer.current for peer in info.cluster.replicas or []) and len(info.cluster.replicas or []) == 2

        await wait_until_async(caught_up, "the restarted node to catch up", 60, interval=0.5)
        ack = await js.publish(AUDIO_RECEIVED, b"{}", headers={"Nats-Msg-Id": "after-leader-death"})
        assert ack.duplicate, "the duplicate window survived the leader change"
    finally:
        await nc.close()


async def test_replicated_topology_on_a_server_without_a_cluster_is_one_clear_error(tmp_path: Path) -> None:
    from services.common.errors import ConfigurationError
    from services.runtime.nats_server import EmbeddedNatsServer

    with EmbeddedNatsServer(tmp_path / "single") as server:
        nc = await connect(NatsSettings(url=server.url), name="single-node-test")
        try:
            with pytest.raises(ConfigurationError, match="needs a JetStream cluster"):
                await ensure_topology(nc.jetstream(), StreamSettings(replicas=3, ready_timeout_s=5))
        finally:
            await nc.close()
