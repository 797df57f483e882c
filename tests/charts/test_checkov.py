"""checkov over every rendered ci/ scenario, plus the transcription Job ``build_job`` makes from
that scenario's settings: no failed check outside the committed skip list (each with a reason).

checkov lives in its own venv (``make`` creates it; KUBESCRIBE_CHECKOV points at the binary).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from services.common.settings import KubernetesSettings
from services.dispatcher.backends.manifests import build_job
from tests.charts.conftest import RELEASE, container_env, one, render_files
from tests.charts.test_chart import SCENARIOS
from tests.k8s.conftest import make_job

SKIPS = yaml.safe_load((Path(__file__).with_name("checkov-skips.yaml")).read_text())
DEFAULT_CHECKOV = Path(__file__).resolve().parents[2] / ".tools" / "checkov" / "bin" / "checkov"


def checkov_binary() -> str:
    found = os.environ.get("KUBESCRIBE_CHECKOV") or (str(DEFAULT_CHECKOV) if DEFAULT_CHECKOV.exists() else None)
    found = found or shutil.which("checkov")
    if not found or not Path(found).exists():
        pytest.skip("checkov not installed: `make test` creates its venv (or set KUBESCRIBE_CHECKOV)")
    return found


def write_scenario(directory: Path, values: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    directory.mkdir(parents=True)
    files = {path: text for path, text in render_files(values).items() if not path.endswith("NOTES.txt")}
    for path, text in files.items():
        (directory / path.replace("/", "_")).write_text(text)
    # The Jobs the dispatcher creates are workloads too: scan one built from this scenario's settings.
    objects = [d for text in files.values() for d in yaml.safe_load_all(text) if d]
    env = container_env(one(objects, "Deployment", f"{RELEASE}-kubescribe-dispatcher"))
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        job = build_job(
            make_job(profile="mig-1g.5gb" if env["KUBESCRIBE_KUBERNETES_USE_DAS"] == "true" else "cpu"),
            KubernetesSettings(),
        )
    (directory / "transcription-job.yaml").write_text(yaml.safe_dump(job))


def test_no_unexplained_checkov_failures(tmp_path, monkeypatch):
    checkov = checkov_binary()
    for param in SCENARIOS:
        write_scenario(tmp_path / param.id, param.values[0], monkeypatch)
    result = subprocess.run(
        [checkov, "-d", str(tmp_path), "--framework", "kubernetes", "-o", "json", "--quiet", "--compact"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed: dict[str, set[str]] = defaultdict(set)
    passed = 0
    for report in reports:
        passed += report["summary"]["passed"]
        assert report["summary"]["parsing_errors"] == 0
        for check in report["results"]["failed_checks"]:
            scenario = Path(check["file_path"]).parts[1]
            failed[check["check_id"]].add(f"{scenario}: {check['resource']}")
    assert passed > 1000  # checkov really looked at the manifests
    unexplained = {k: sorted(v) for k, v in failed.items() if k not in SKIPS}
    assert unexplained == {}
    stale = sorted(set(SKIPS) - set(failed))
    assert stale == [], "skips no scenario needs: remove them from checkov-skips.yaml"
    assert all(isinstance(reason, str) and len(reason) > 40 for reason in SKIPS.values())
