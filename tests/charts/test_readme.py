"""charts/kubescribe/README.md is generated from values.yaml: it must be fresh and complete.

Same approach as tests/unit/test_schemas_fresh.py: regenerate in memory and compare. The
completeness check reads values.yaml with PyYAML and the README as text, independently of the
generator's own parser, so a key added without a ``# --`` comment fails here.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import CHART, REPO

FIX = "run `make chart-readme` (python scripts/chart_readme.py) and commit the result"
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \|", re.MULTILINE)


def _load_generator():
    spec = importlib.util.spec_from_file_location("chart_readme", REPO / "scripts" / "chart_readme.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


chart_readme = _load_generator()


def _leaves(values: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf path; an empty mapping or any list counts as a leaf (the user fills it in)."""
    if isinstance(values, dict) and values:
        return [leaf for key, value in values.items() for leaf in _leaves(value, (*path, str(key)))]
    return [path]


def _table_keys(readme: str) -> list[str]:
    return ROW.findall(readme)


class TestChartReadme:
    def test_readme_matches_values_yaml(self):
        readme = CHART / "README.md"
        assert readme.is_file(), f"{readme} is missing: {FIX}"
        current = readme.read_text()
        assert chart_readme.BEGIN in current and chart_readme.END in current, f"generated block missing: {FIX}"
        assert chart_readme.render_readme(current) == current, f"{readme} is stale: {FIX}"

    def test_every_leaf_is_in_the_table_itself_or_through_a_documented_block(self):
        keys = set(_table_keys((CHART / "README.md").read_text()))
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        missing = [
            chart_readme.format_path(leaf)
            for leaf in _leaves(values)
            if not any(chart_readme.format_path(leaf[:n]) in keys for n in range(1, len(leaf) + 1))
        ]
        assert not missing, f"values without a `# --` comment (or a documented parent block): {missing}"

    def test_every_documented_key_has_exactly_one_row(self):
        text = (CHART / "values.yaml").read_text()
        keys = _table_keys((CHART / "README.md").read_text())
        documented = len(re.findall(r"^\s*# --( |$)", text, re.MULTILINE))
        assert len(keys) == len(set(keys)), "a key appears twice in the README tables"
        assert len(keys) == documented, f"{documented} `# --` comments in values.yaml but {len(keys)} rows: {FIX}"

    def test_documented_blocks_are_rows_with_the_whole_mapping_as_default(self):
        keys = set(_table_keys((CHART / "README.md").read_text()))
        for block in ("podSecurityContext", "apiToken", "kueue.clusterQueue.migProfiles", "kueue.priorityClasses"):
            assert block in keys
        assert "kueue.priorityClasses.high" not in keys
        assert '`{"high": 1000, "normal": 100, "low": 10}`' in (CHART / "README.md").read_text()


SAMPLE = """\
# Header notes are not a key's description.
# -- Top-level flag.
enabled: true
###########
# Network: where things listen
# https://example.com/docs
###########
server:
  # A note before the marker is ignored.
  # -- Port of the
  #    HTTP API.
  port: 8080
  undocumented: 1
  # -- Resources, a documented block.
  resources:
    requests: {cpu: 100m, memory: 256Mi}
  # -- Named <fullname>-server by default; `a|b` stays code.
  name: ""
  tolerations:
    # -- Not a key of ours: inside a list item.
    - key: x
  script: |
    # -- a line of a block scalar, not a comment
    echo hi
  # -- Still parsed after the block scalar.
  after: "x"
"""


class TestGenerator:
    def test_collects_documented_keys_as_dotted_paths_in_file_order(self):
        sections = chart_readme.parse_values(SAMPLE)
        assert [s.title for s in sections] == ["General", "Network: where things listen"]
        assert sections[1].notes == ["https://example.com/docs"]
        rows = {v.key: v for s in sections for v in s.values}
        assert list(rows) == ["enabled", "server.port", "server.resources", "server.name", "server.after"]
        assert rows["server.port"].description == "Port of the HTTP API."
        assert rows["server.resources"].default == {"requests": {"cpu": "100m", "memory": "256Mi"}}

    def test_long_defaults_are_cut_at_an_item_boundary(self):
        value = {f"key{i}": i for i in range(20)}
        text = chart_readme.render_default(value, limit=40)
        assert text.endswith(", …") and len(text) <= 40 + 3
        assert text.startswith('{"key0": 0, "key1": 1')
        assert chart_readme.render_default("IfNotPresent") == '"IfNotPresent"'

    def test_table_cells_escape_html_and_pipes_outside_code(self):
        assert chart_readme._cell("defaults to <fullname>; `a|b`") == "defaults to &lt;fullname&gt;; `a\\|b`"

    def test_hand_written_text_around_the_markers_stays(self, tmp_path: Path):
        chart = tmp_path / "chart"
        chart.mkdir()
        (chart / "Chart.yaml").write_text("name: demo\nversion: 1.0.0\ndescription: A demo.\n")
        (chart / "values.yaml").write_text(SAMPLE)
        created = chart_readme.render_readme(None, chart)
        assert created.startswith("# demo\n\nA demo.\n") and "| `server.port` | int | `8080` |" in created

        edited = "# My own title\n\nHand-written.\n\n" + created[created.index(chart_readme.BEGIN) :] + "\nFooter.\n"
        (chart / "values.yaml").write_text(SAMPLE.replace("port: 8080", "port: 9090"))
        updated = chart_readme.render_readme(edited, chart)
        assert updated.startswith("# My own title\n\nHand-written.\n\n") and updated.endswith("\nFooter.\n")
        assert "| `server.port` | int | `9090` |" in updated and "`8080`" not in updated

    def test_check_mode_exits_1_on_a_stale_readme(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
        chart = tmp_path / "chart"
        chart.mkdir()
        (chart / "Chart.yaml").write_text("name: demo\nversion: 1.0.0\n")
        (chart / "values.yaml").write_text(SAMPLE)
        assert chart_readme.main(["--chart", str(chart)]) == 0
        assert chart_readme.main(["--chart", str(chart), "--check"]) == 0
        (chart / "values.yaml").write_text(SAMPLE.replace("Top-level flag.", "Top-level switch."))
        assert chart_readme.main(["--chart", str(chart), "--check"]) == 1
        assert "stale" in capsys.readouterr().err
