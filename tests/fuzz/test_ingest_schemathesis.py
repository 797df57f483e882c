"""Schema-driven fuzzing of the ingest API with schemathesis, against a real ingest process.

The ingest runs as ``python -m services.ingest.app`` on loopback with per-tenant keys and the
session's nats-server; schemathesis (its own venv: ``make schemathesis``) reads the served
OpenAPI document and runs every phase, stateful included (the upload's links lead it to the
read and delete routes), with all checks, a fixed seed and a bounded number of examples.
Any 5xx, any answer the document does not describe, fails the test with schemathesis' report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from services.ingest.keys import create_key
from tests.integration.ingest_support import ingest_subprocess
from tests.speech import SENTENCES, synthesize

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(os.environ.get("KUBESCRIBE_SCHEMATHESIS") or REPO / ".tools" / "schemathesis" / "bin" / "st")
"""The ``st`` CLI; ``make schemathesis`` creates its venv (pinned in the Makefile)."""
SEED = 14
MAX_EXAMPLES = 50
"""Per operation and phase: ~700 cases, ~30 s on this (shared, loaded) machine. (Not
``--generation-deterministic``: it ignores the seed and spent minutes generating here.)"""


def test_schemathesis_finds_nothing(nats_settings, tmp_path: Path) -> None:
    if not SCHEMATHESIS.exists() and shutil.which("st") is None:
        pytest.skip(f"{SCHEMATHESIS} missing: run `make schemathesis` (make test does)")
    st = str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("st"))
    wav = synthesize(SENTENCES[2], tmp_path / "fuzz.wav")
    keys = tmp_path / "api-keys.json"
    _, key = create_key(keys, tenant="fuzz")
    env = {"KUBESCRIBE_API_KEYS_FILE": str(keys), "KUBESCRIBE_INGEST_MAX_UPLOAD_BYTES": str(1 << 20)}
    with ingest_subprocess(nats_settings.url, tmp_path, **env) as (_, base):
        result = subprocess.run(
            [
                st,
                "--config-file",
                str(Path(__file__).with_name("schemathesis.toml")),
                "run",
                f"{base}/openapi.json",
                "--checks",
                "all",
                "--seed",
                str(SEED),
                "--max-examples",
                str(MAX_EXAMPLES),
                "--header",
                f"Authorization: Bearer {key}",
                "--request-timeout",
                "30",
                "--workers",
                "1",
                # A Hypothesis generator health check, not an API check: path strings that cannot go
                # in a URL are filtered out, which with few examples trips it at random.
                "--suppress-health-check",
                "filter_too_much",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # st keeps a .schemathesis cache in its working directory
            env={
                **os.environ,
                "NO_COLOR": "1",
                "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("st_hooks.py")),
                "KUBESCRIBE_FUZZ_WAV": str(wav),
            },
        )
    (tmp_path / "schemathesis.txt").write_text(result.stdout + result.stderr)
    report = result.stdout[-12000:] + result.stderr[-4000:]
    assert result.returncode == 0, report
    assert "API Links:" in report and " 0 covered" not in report, report  # stateful runs reached the reads
    print(report[-3000:])
