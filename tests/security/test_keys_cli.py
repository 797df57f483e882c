"""``kubescribe keys``: a key is printed once, stored hashed, listed by id only; usage errors exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.ingest.keys import KeyRing, create_key
from tests.integration.ingest_support import ingest_subprocess
from tests.speech import SENTENCES, synthesize


def kubescribe(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBESCRIBE_DATA_DIR": str(data_dir)}
    env.pop("KUBESCRIBE_API_KEYS_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_create_list_revoke(tmp_path: Path) -> None:
    created = kubescribe(tmp_path, "keys", "create", "--tenant", "acme")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ks_") and len(key) > 40
    stored = (tmp_path / "api-keys.json").read_text()
    assert key not in stored
    principal = KeyRing(tmp_path / "api-keys.json").authenticate(key)
    assert principal is not None and (principal.tenant, principal.admin) == ("acme", False)

    listed = kubescribe(tmp_path, "keys", "list")
    assert listed.returncode == 0 and "acme" in listed.stdout and key not in listed.stdout
    key_id = listed.stdout.split()[0]
    assert kubescribe(tmp_path, "keys", "revoke", key_id).returncode == 0
    assert KeyRing(tmp_path / "api-keys.json").authenticate(key) is None
    assert kubescribe(tmp_path, "keys", "revoke", key_id).returncode == 1


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert kubescribe(tmp_path, "keys", "create").returncode == 2
    assert kubescribe(tmp_path, "keys", "create", "--tenant", "acme", "--admin").returncode == 2
    bad = kubescribe(tmp_path, "keys", "create", "--tenant", "Not_A_Label")
    assert bad.returncode == 1 and "DNS label" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.nats
@pytest.mark.slow  # seven CLI start-ups
def test_delete_command(nats_settings, tmp_path: Path) -> None:
    _, key = create_key(tmp_path / "api-keys.json", tenant="acme")
    clip = synthesize(SENTENCES[4], tmp_path / "clip.wav").read_bytes()
    env = {"KUBESCRIBE_API_KEYS_FILE": str(tmp_path / "api-keys.json")}
    with ingest_subprocess(nats_settings.url, tmp_path, **env) as (_, base):
        headers = {"Authorization": f"Bearer {key}"}
        upload = httpx.post(f"{base}/v1/recordings", content=clip, headers={**headers, "Content-Type": "audio/wav"})
        recording_id = upload.json()["id"]
        wrong = kubescribe(tmp_path, "delete", recording_id, "--url", base, "--token", "ks_0_wrong")
        assert wrong.returncode == 1 and "401" in wrong.stderr and "Traceback" not in wrong.stderr
        done = kubescribe(tmp_path, "delete", recording_id, "--url", base, "--token", key)
        assert done.returncode == 0, done.stderr
        assert httpx.get(f"{base}/v1/recordings/{recording_id}", headers=headers).status_code == 404
        again = kubescribe(tmp_path, "delete", recording_id, "--url", base, "--token", key)
        assert again.returncode == 0, again.stderr  # idempotent
