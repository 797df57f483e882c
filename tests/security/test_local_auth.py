"""``kubescribe up`` turns auth on: an admin key in the data dir, in the panel and in every service's env."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.ingest.keys import KEYS_FILE_NAME, LOCAL_KEY_FILE, KeyRing
from services.runtime.stack import EmbeddedStack
from tests.integration.ingest_support import ingest_subprocess


def test_stack_with_auth_has_a_stable_admin_key(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path, llm="sim", nats_port=0, llm_port=0, ingest_port=0, auth=True)
    assert stack.api_key and stack.api_key in stack.describe()
    assert stack.child_env()["KUBESCRIBE_API_KEYS_FILE"] == str(tmp_path / KEYS_FILE_NAME)
    principal = KeyRing(tmp_path / KEYS_FILE_NAME).authenticate(stack.api_key)
    assert principal is not None and principal.admin
    assert (tmp_path / LOCAL_KEY_FILE).stat().st_mode & 0o077 == 0
    again = EmbeddedStack(tmp_path, llm="sim", nats_port=0, llm_port=0, ingest_port=0, auth=True)
    assert again.api_key == stack.api_key  # a restart keeps the key submit and scripts use


def test_no_auth_stack_has_no_key(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path, llm="sim", nats_port=0, llm_port=0, ingest_port=0, auth=False)
    assert stack.api_key is None and "auth off" in stack.describe()
    assert "KUBESCRIBE_API_KEYS_FILE" not in stack.child_env()


@pytest.mark.nats
def test_ingest_with_the_stacks_env_needs_the_key(nats_settings, tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path, llm="sim", nats_port=0, llm_port=0, ingest_port=0, auth=True)
    env = {"KUBESCRIBE_API_KEYS_FILE": stack.child_env()["KUBESCRIBE_API_KEYS_FILE"]}
    with ingest_subprocess(nats_settings.url, tmp_path, **env) as (_, base):
        missing = httpx.get(f"{base}/v1/recordings/01JDZ8W3V0R4N8M0Q2K5T7Y9AB", timeout=10)
        assert missing.status_code == 401
        keyed = httpx.get(
            f"{base}/v1/recordings/01JDZ8W3V0R4N8M0Q2K5T7Y9AB",
            headers={"Authorization": f"Bearer {stack.api_key}"},
            timeout=10,
        )
        assert keyed.status_code == 404
