"""``kubescribe keys``: a key is printed once, stored hashed, listed by id only; usage errors exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.ingest.keys import KeyRing


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
