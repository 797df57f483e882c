"""Event contracts: versioned types, strict validation, readable errors."""

from __future__ import annotations

import json

import pytest

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


def test_unknown_fields_are_rejected_with_their_name() -> None:
    body = json.loads(make_audio_received().model_dump_json())
    body["colour"] = "blue"
    with pytest.raises(InvalidEventError, match="colour: Extra inputs are not permitted"):
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
