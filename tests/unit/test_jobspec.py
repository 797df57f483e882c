"""The transcription job spec: strict to write, tolerant to read (a rolling upgrade may mix versions)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.common.events import ObjectRef
from services.common.ids import new_id
from services.common.jobspec import JOB_SPEC, JobRecording, TranscriptionJob, parse_job


def _job() -> TranscriptionJob:
    recording = JobRecording(recording_id=new_id(), audio=ObjectRef(bucket="audio", name="a"), duration_s=2.5)
    return TranscriptionJob(model="tiny.en", profile="cpu", recordings=[recording])


def test_the_dispatcher_cannot_write_an_undeclared_field() -> None:
    with pytest.raises(ValidationError, match="gpu_hint"):
        TranscriptionJob(model="tiny.en", profile="cpu", recordings=[], gpu_hint="a100")


def test_a_newer_dispatchers_spec_is_read_without_its_new_fields() -> None:
    job = _job()
    body = json.loads(job.model_dump_json())
    body["gpu_hint"] = "a100"
    body["recordings"][0]["speakers"] = 2

    def count(field: str) -> float:
        labels = {"event_type": JOB_SPEC, "field": field}
        return REGISTRY.get_sample_value("kubescribe_event_unknown_fields_total", labels) or 0.0

    before = count("gpu_hint"), count("recordings[].speakers")
    assert parse_job(json.dumps(body).encode()) == job
    assert (count("gpu_hint"), count("recordings[].speakers")) == (before[0] + 1, before[1] + 1)


def test_a_malformed_spec_is_a_value_error() -> None:
    body = json.loads(_job().model_dump_json())
    body["recordings"][0]["duration_s"] = "long"
    with pytest.raises(ValueError, match="duration_s"):
        parse_job(json.dumps(body))
    with pytest.raises(ValueError):
        parse_job(b"not json")
