"""Event contracts: versioned types, strict producers, tolerant consumers, readable errors."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.common.errors import InvalidEventError
from services.common.events import (
    EVENT_TYPES,
    AudioReceived,
    ObjectRef,
    RecordingFailed,
    Stage,
    failed_subject,
    parse_event,
    recording_id_of,
)
from services.common.ids import is_valid_id, new_id


def make_audio_received(**overrides: object) -> AudioReceived:
    fields: dict = {
        "source": "tests",
        "recording_id": new_id(),
        "audio": ObjectRef(bucket="audio", name="clip"),
    }
    fields.update(overrides)
    return AudioReceived(**fields)


def test_every_event_type_is_versioned_and_named_after_its_subject() -> None:
    for model in EVENT_TYPES:
        assert model.TYPE.startswith("kubescribe.") and model.TYPE.endswith(".v1")
        assert model.model_fields["type"].default == model.TYPE


def test_round_trip_keeps_every_field() -> None:
    event = make_audio_received(tenant="acme", priority="high", duration_s=3.5)
    assert parse_event(AudioReceived, event.model_dump_json()) == event


def test_producers_cannot_construct_an_event_with_an_unknown_field() -> None:
    with pytest.raises(ValidationError, match="colour\n  Extra inputs are not permitted"):
        make_audio_received(colour="blue")
    with pytest.raises(ValidationError, match="tier\n  Extra inputs are not permitted"):
        ObjectRef(bucket="audio", name="clip", tier="hot")


def _unknown_count(event_type: str, field: str) -> float:
    return (
        REGISTRY.get_sample_value("kubescribe_event_unknown_fields_total", {"event_type": event_type, "field": field})
        or 0.0
    )


def test_consumers_drop_unknown_fields_log_each_once_and_count_every_one(caplog: pytest.LogCaptureFixture) -> None:
    event = make_audio_received(duration_s=2.0)
    body = json.loads(event.model_dump_json())
    field = f"speaker_count_{new_id().lower()}"  # unique: the log-once memory is per process
    body[field] = 2
    body["audio"]["tier_" + field] = "hot"
    before = _unknown_count(AudioReceived.TYPE, field)
    with caplog.at_level(logging.WARNING, logger="services.common.tolerant"):
        first = parse_event(AudioReceived, json.dumps(body))
        second = parse_event(AudioReceived, json.dumps(body).encode())
        third = parse_event(AudioReceived, body)
    assert first == second == third == event
    assert _unknown_count(AudioReceived.TYPE, field) == before + 3
    assert _unknown_count(AudioReceived.TYPE, f"audio.tier_{field}") == 3
    logged = [r.getMessage() for r in caplog.records if field in r.getMessage()]
    assert len(logged) == 2, logged
    assert any(f"'{field}' of kubescribe.audio.received.v1" in line for line in logged)
    assert any(f"'audio.tier_{field}'" in line for line in logged)


def test_unknown_fields_do_not_excuse_invalid_known_ones() -> None:
    body = json.loads(make_audio_received().model_dump_json())
    body["colour"] = "blue"
    body["priority"] = "urgent"
    with pytest.raises(InvalidEventError, match=r"priority: .*\(unknown fields, ignored: colour\)"):
        parse_event(AudioReceived, json.dumps(body))


@pytest.mark.parametrize(
    ("field", "value"),
    [("tenant", "Not A Label"), ("priority", "urgent"), ("recording_id", "123"), ("schema_version", 2)],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    body = json.loads(make_audio_received().model_dump_json())
    body[field] = value
    with pytest.raises(InvalidEventError, match=field):
        parse_event(AudioReceived, json.dumps(body))


def test_garbage_is_an_invalid_event_not_a_crash() -> None:
    with pytest.raises(InvalidEventError, match=r"invalid kubescribe\.audio\.received\.v1 event"):
        parse_event(AudioReceived, b"\x00not json")


def test_recording_id_of_malformed_body_is_best_effort() -> None:
    recording_id = new_id()
    assert recording_id_of(json.dumps({"recording_id": recording_id, "junk": 1})) == recording_id
    assert recording_id_of(b"[1, 2]") is None
    assert recording_id_of(b"\xff") is None


def test_failures_go_to_their_stage_subject() -> None:
    failure = RecordingFailed(source="tests", stage=Stage.dispatch, reason="bad", retryable=False)
    assert failure.failed_subject == failed_subject("dispatch") == "kubescribe.dispatch.failed"
    assert failure.recording_id is None


def test_ids_are_sortable_ulids() -> None:
    first, second = new_id(), new_id()
    assert is_valid_id(first) and is_valid_id(second)
    assert first <= second
    assert not is_valid_id("../../etc/passwd")
