"""``kubescribe up --llm-replicas N``: the embedded stack reaches its replicas only through the gateway."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.common.errors import ConfigurationError
from services.runtime.stack import EmbeddedStack, quiet_sink


def test_replicas_need_the_simulator(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs the simulator"):
        EmbeddedStack(tmp_path, llm="external", llm_replicas=2, nats_port=0, llm_port=0, ingest_port=0)


@pytest.mark.slow
def test_embedded_stack_with_replicas_behind_envoy(tmp_path: Path) -> None:
    stack = EmbeddedStack(
        tmp_path, llm="sim", llm_replicas=2, nats_port=0, llm_port=0, ingest_port=0, sink=quiet_sink,
        env={"KUBESCRIBE_API_TOKEN": ""},
    )  # fmt: skip
    try:
        stack.start()
        names = {p.name for p in stack.supervisor.processes}
        assert {"llm", "llm-0", "llm-1", "llm-picker", "summarizer"} <= names
        assert "replicas behind Envoy" in stack.describe()
        model = httpx.get(f"{stack.llm_base_url}/models").json()["data"][0]["id"]
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}
        answer = httpx.post(f"{stack.llm_base_url}/chat/completions", json=body, timeout=30)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 2
    finally:
        stack.stop()
