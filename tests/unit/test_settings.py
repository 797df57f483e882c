"""Settings read their documented environment variables."""

from __future__ import annotations

import os

import pytest

from services.common.settings import DispatcherSettings, KubernetesSettings, LlmSettings, NatsSettings, Settings


def test_defaults_work_with_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # tests/conftest.py points KUBESCRIBE_NATS_URL at the session's server; set more so the
    # defaults below can only come from the code, not from whatever this process inherited.
    monkeypatch.setenv("KUBESCRIBE_NATS_URL", "nats://elsewhere:4222")
    monkeypatch.setenv("KUBESCRIBE_BACKEND", "kubernetes")
    monkeypatch.setenv("KUBESCRIBE_INGEST_MAX_UPLOAD_BYTES", "1")
    for name in [name for name in os.environ if name.startswith("KUBESCRIBE_")]:
        monkeypatch.delenv(name)
    settings = Settings()
    assert settings.nats.url == "nats://127.0.0.1:4222"
    assert settings.dispatcher.backend == "local"
    assert settings.ingest.max_upload_bytes == 512 << 20
    assert settings.llm.base_url == "http://127.0.0.1:8000/v1"
    assert settings.llm.objectives == {"high": "interactive", "normal": "standard", "low": "batch"}


def test_flat_contract_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESCRIBE_BACKEND", "kubernetes")
    monkeypatch.setenv("KUBESCRIBE_KUEUE_QUEUE", "team-a")
    monkeypatch.setenv("KUBESCRIBE_KUBERNETES_NAMESPACE", "speech")
    monkeypatch.setenv("KUBESCRIBE_LLM_BASE_URL", "http://gateway/v1")
    assert DispatcherSettings().backend == "kubernetes"
    assert KubernetesSettings().kueue_queue == "team-a"
    assert KubernetesSettings().namespace == "speech"
    assert LlmSettings().base_url == "http://gateway/v1"


def test_json_maps_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESCRIBE_DISPATCHER_TENANT_MODELS", '{"acme": "medium"}')
    assert DispatcherSettings().tenant_models == {"acme": "medium"}


def test_nats_credentials_are_passed_through() -> None:
    options = NatsSettings(url="nats://n:4222", user="u", password="p").connect_options()
    assert options["servers"] == ["nats://n:4222"] and options["user"] == "u" and options["password"] == "p"
