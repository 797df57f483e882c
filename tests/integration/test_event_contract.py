"""The event contract at its two ends: strict producers, tolerant consumers (CloudEvents' tolerant reader).

Every event the real services publish in an end-to-end run is checked against the committed
schema in ``schemas/`` with additional properties forbidden, a producer that adds a field the
committed schema does not declare fails that same check, and a running v1 consumer processes a
v1 event that carries fields it does not know.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import nats
import pytest
from prometheus_client import REGISTRY
from pydantic import ConfigDict

from services.common.events import EVENT_TYPES, RecordingDeleted, SummaryReady, TranscriptReady
from services.common.ids import new_id
from services.common.messaging import publish_event
from services.common.status import RecordingStage
from services.common.topology import AUDIO_RECEIVED
from services.runtime.demo import bundled_samples
from services.runtime.sim import SimConfig, SimLlmServer
from tests.integration.test_summarizer_service import _settings, _submit, _wait_done, running

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
TYPE_HEADER = "Kubescribe-Event-Type"


@cache
def _validator(event_type: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{event_type}.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def schema_violations(headers: dict[str, str] | None, data: bytes) -> list[str]:
    """Why a published message breaks the committed schema of the type its header names ([] if it does not)."""
    event_type = (headers or {}).get(TYPE_HEADER)
    if event_type not in {model.TYPE for model in EVENT_TYPES}:
        return [f"{TYPE_HEADER} header {event_type!r} names no committed event schema"]
    body = json.loads(data)
    problems = [
        f"{'.'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
        for e in _validator(event_type).iter_errors(body)
    ]
    if body.get("type") != event_type:
        problems.append(f"type {body.get('type')!r} differs from the {TYPE_HEADER} header {event_type!r}")
    return problems


def test_committed_event_schemas_forbid_additional_properties() -> None:
    for model in EVENT_TYPES:
        schema = json.loads((SCHEMAS / f"{model.TYPE}.json").read_text())
        objects = [schema, *(d for d in schema.get("$defs", {}).values() if d.get("type") == "object")]
        assert all(o.get("additionalProperties") is False for o in objects), model.TYPE


class _Capture:
    """Every message on ``kubescribe.>`` that a kubescribe producer published (it sets the type header)."""

    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, str], bytes]] = []

    async def on_message(self, msg) -> None:
        if msg.headers and TYPE_HEADER in msg.headers:
            self.messages.append((dict(msg.headers), msg.data))

    def types(self) -> set[str]:
        return {headers[TYPE_HEADER] for headers, _ in self.messages}


@pytest.mark.slow
async def test_every_event_the_stack_publishes_matches_its_committed_schema(embedded_stack) -> None:
    """One recording through ingest, dispatcher, transcriber and summarizer, plus a malformed
    message the dispatcher must report: every event published on the way is checked."""
    stack = embedded_stack
    capture = _Capture()
    nc = await nats.connect(stack.nats_url)
    try:
        await nc.subscribe("kubescribe.>", cb=capture.on_message)
        await nc.flush()
        sample = bundled_samples()[0].path
        async with httpx.AsyncClient(base_url=stack.ingest_url, timeout=30) as client:
            response = await client.post(
                "/v1/recordings", files={"file": (sample.name, sample.read_bytes(), "audio/wav")}
            )
            assert response.status_code == 202, response.text
            recording_id = response.json()["id"]
            await nc.jetstream().publish(AUDIO_RECEIVED, json.dumps({"recording_id": recording_id[:-1] + "!"}).encode())
            expected = {model.TYPE for model in EVENT_TYPES}
            deadline = time.monotonic() + 120
            while not expected - {RecordingDeleted.TYPE} <= capture.types() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            stage = (await client.get(f"/v1/recordings/{recording_id}")).json()["stage"]
            # Deleting the recording publishes the last event type the stack has.
            assert (await client.delete(f"/v1/recordings/{recording_id}")).status_code == 204
            while not expected <= capture.types() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
    finally:
        await nc.close()
    assert expected <= capture.types(), f"saw {sorted(capture.types())}; the recording is at {stage}"
    problems = {
        f"{headers[TYPE_HEADER]} #{i}": found
        for i, (headers, data) in enumerate(capture.messages)
        if (found := schema_violations(headers, data))
    }
    assert not problems, problems


async def test_a_producer_that_adds_an_undeclared_field_fails_the_schema_check(js) -> None:
    class DriftedSummaryReady(SummaryReady):
        """A newer producer that added a field without regenerating ``schemas/``."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        speaker_count: int = 2

    fields: dict[str, Any] = {
        "source": "tests/contract",
        "recording_id": new_id(),
        "summary": {"bucket": "summaries", "name": uuid.uuid4().hex},
        "model": "m",
        "ttft_s": 0.1,
        "generation_s": 0.2,
        "tokens_in": 10,
        "tokens_out": 5,
    }
    sub = await js.subscribe(SummaryReady.SUBJECT)
    try:
        for event in (SummaryReady(**fields), DriftedSummaryReady(**fields)):
            await publish_event(js, event)
        received = []
        while len(received) < 2:
            msg = await sub.next_msg(timeout=5)
            if fields["recording_id"].encode() in msg.data:
                received.append(msg)
    finally:
        await sub.unsubscribe()
    strict, drifted = (schema_violations(msg.headers, msg.data) for msg in received)
    assert strict == []
    assert len(drifted) == 1 and "'speaker_count' was unexpected" in drifted[0], drifted


def _unknown_count(field: str) -> float:
    labels = {"event_type": TranscriptReady.TYPE, "field": field}
    return REGISTRY.get_sample_value("kubescribe_event_unknown_fields_total", labels) or 0.0


@pytest.mark.nats
async def test_a_v1_consumer_processes_a_v1_event_with_unknown_optional_fields(js, nats_settings) -> None:
    """The running summarizer gets a TranscriptReady from a newer producer: it summarizes it."""
    field = f"speaker_count_{uuid.uuid4().hex[:8]}"
    before = (_unknown_count(field), _unknown_count(f"transcript.{field}"))
    with SimLlmServer(SimConfig(model="m")) as sim:
        # Stored and published before the summarizer (DeliverPolicy.NEW) starts: this test's
        # durable sees only the extended copy below.
        recording_id, event = await _submit(js)
        async with running(_settings(nats_settings, sim)):
            body = json.loads(event.model_dump_json())
            body["id"] = new_id()
            body[field] = 2
            body["transcript"][field] = "hot"
            await js.publish(TranscriptReady.SUBJECT, json.dumps(body).encode())
            status = await _wait_done(js, recording_id)
    assert status.stage is RecordingStage.summarized, status.error
    assert (_unknown_count(field), _unknown_count(f"transcript.{field}")) == (before[0] + 1, before[1] + 1)
