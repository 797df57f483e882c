"""Signed webhooks end to end: the embedded stack as processes (``kubescribe up``'s, notifier
included) posts to a real HTTP receiver on loopback, which ``KUBESCRIBE_NOTIFIER_ALLOWED_NETWORKS``
allows; IPv6 loopback and the cloud metadata address stay refused (SSRF guard)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import nats
import pytest

from services.common.events import Stage
from services.common.ids import new_id
from services.common.messaging import report_failure
from services.common.status import RecordingStatus, StatusStore, WebhookDelivery
from services.notifier import HEADER, SignatureError, verify_signature
from services.runtime.demo import bundled_samples
from tests.conftest import start_embedded_stack

pytestmark = [pytest.mark.nats, pytest.mark.slow]

SECRET = "whsec-test-0123456789"
ACME_SECRET = "whsec-acme-9876543210"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST; ``fail_first[path]`` 500s come first."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_first: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers.items()), body))
                    failing = receiver.fail_first.get(self.path, 0)
                    if failing:
                        receiver.fail_first[self.path] = failing - 1
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def to(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(headers, body) for p, headers, body in self.requests if p == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver):
    stack = start_embedded_stack(
        tmp_path_factory.mktemp("webhooks"),
        env={
            "KUBESCRIBE_NOTIFIER_SECRET": SECRET,
            "KUBESCRIBE_NOTIFIER_TENANT_SECRETS": json.dumps({"acme": ACME_SECRET}),
            "KUBESCRIBE_NOTIFIER_TENANT_URLS": json.dumps({"acme": f"{receiver.url}/acme"}),
            "KUBESCRIBE_NOTIFIER_ALLOWED_NETWORKS": json.dumps(["127.0.0.1/32"]),
            "KUBESCRIBE_NOTIFIER_BACKOFF_BASE_S": "0.3",
        },
    )
    yield stack
    stack.stop()


def upload(stack, path: Path, *, callback_url: str | None = None, tenant: str = "default") -> httpx.Response:
    params = {"callback_url": callback_url} if callback_url else None
    with httpx.Client(base_url=stack.ingest_url, timeout=30) as client:
        return client.post(
            "/v1/recordings",
            params=params,
            headers={"X-Tenant": tenant},
            files={"file": (path.name, path.read_bytes(), "audio/wav")},
        )


def wait_webhook(stack, recording_id: str, states: tuple[str, ...], timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    with httpx.Client(base_url=stack.ingest_url, timeout=10) as client:
        while time.monotonic() < deadline:
            status = client.get(f"/v1/recordings/{recording_id}").json()
            if (status.get("webhook") or {}).get("state") in states:
                return status
            time.sleep(0.2)
    raise AssertionError(f"webhook of {recording_id} not in {states} after {timeout}s: {status}")


def verified(deliveries: list[tuple[dict[str, str], bytes]], secret: str) -> list[dict]:
    """Every delivery's signature checked with the package's helper; the parsed bodies."""
    bodies = []
    for headers, body in deliveries:
        verify_signature(body, headers.get(HEADER), secret)
        with pytest.raises(SignatureError):
            verify_signature(body + b" ", headers.get(HEADER), secret)
        with pytest.raises(SignatureError):
            verify_signature(body, headers.get(HEADER), "another-secret")
        bodies.append(json.loads(body))
    return bodies


def test_one_signed_post_per_recording_and_a_500_is_retried(stack, receiver: Receiver) -> None:
    samples = [sample.path for sample in bundled_samples()]
    receiver.fail_first["/flaky"] = 2
    steady = upload(stack, samples[0], callback_url=f"{receiver.url}/steady")
    flaky = upload(stack, samples[1], callback_url=f"{receiver.url}/flaky")
    acme = upload(stack, samples[2], tenant="acme")  # no callback_url: the tenant's default URL
    assert steady.status_code == flaky.status_code == acme.status_code == 202, steady.text
    ids = {"steady": steady.json()["id"], "flaky": flaky.json()["id"], "acme": acme.json()["id"]}

    statuses = {name: wait_webhook(stack, rid, ("delivered", "failed")) for name, rid in ids.items()}
    assert {name: s["webhook"]["state"] for name, s in statuses.items()} == dict.fromkeys(ids, "delivered")
    time.sleep(1.5)  # a duplicate would arrive within the redelivery delays; none may

    (one,) = verified(receiver.to("/steady"), SECRET)
    assert one["type"] == "recording.summarized" and one["recording_id"] == ids["steady"]
    assert one["data"]["stage"] == "summarized" and one["data"]["summary"]
    assert statuses["steady"]["webhook"]["attempts"] == 1 and statuses["steady"]["stage"] == "summarized"

    flaky_bodies = verified(receiver.to("/flaky"), SECRET)
    assert len(flaky_bodies) == 3  # 500, 500, then 204
    assert {b["id"] for b in flaky_bodies} == {flaky_bodies[0]["id"]}  # the same delivery id each time
    assert statuses["flaky"]["webhook"]["attempts"] == 3 and statuses["flaky"]["webhook"]["last_status_code"] == 204

    (tenant_default,) = verified(receiver.to("/acme"), ACME_SECRET)
    assert tenant_default["recording_id"] == ids["acme"] and tenant_default["tenant"] == "acme"


@pytest.mark.parametrize(
    ("url", "address"),
    [("http://[::1]:{port}/ipv6-loopback", "::1"), ("http://169.254.169.254/latest/meta-data", "169.254.169.254")],
)
def test_a_private_target_is_refused_and_the_status_says_so(stack, receiver: Receiver, url: str, address: str) -> None:
    response = upload(stack, bundled_samples()[0].path, callback_url=url.format(port=receiver.server.server_port))
    assert response.status_code == 202, response.text
    status = wait_webhook(stack, response.json()["id"], ("refused", "delivered", "failed"))
    webhook = status["webhook"]
    assert webhook["state"] == "refused" and webhook["attempts"] == 0
    assert address in webhook["error"] and "SSRF" in webhook["error"]
    assert not receiver.to("/ipv6-loopback")


def test_a_failure_is_notified_too(stack, receiver: Receiver) -> None:
    """A RecordingFailed on the FAILED stream (as the transcriber reports one) reaches the receiver."""

    async def fail_one() -> str:
        nc = await nats.connect(stack.nats_url)
        try:
            js = nc.jetstream()
            store = await StatusStore.open(js)
            recording_id = new_id()
            await store.kv.create(
                recording_id,
                RecordingStatus(recording_id=recording_id, webhook=WebhookDelivery(url=f"{receiver.url}/failed"))
                .model_dump_json()
                .encode(),
            )
            await report_failure(
                js,
                stage=Stage.transcribe,
                reason="cannot decode audio: InvalidDataError",
                retryable=False,
                source="tests",
                recording_id=recording_id,
            )
            return recording_id
        finally:
            await nc.drain()

    recording_id = asyncio.run(fail_one())
    wait_webhook(stack, recording_id, ("delivered",))
    (body,) = verified(receiver.to("/failed"), SECRET)
    assert body["type"] == "recording.failed" and body["data"]["failed_stage"] == "transcribe"
    assert "cannot decode audio" in body["data"]["reason"]


def test_a_malformed_callback_url_is_a_422(stack) -> None:
    response = upload(stack, bundled_samples()[0].path, callback_url="ftp://example.com/hook")
    assert response.status_code == 422 and response.json()["error"] == "invalid_callback_url"
