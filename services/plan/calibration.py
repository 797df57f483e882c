"""Calibration: every number the simulator uses, each with the source it comes from.

A number without a source cannot be judged, so there is none: the defaults below name a
published benchmark, the paper's companion repository, or say plainly that they are an
assumption (and then the report sweeps them). A calibration file (YAML or JSON, ``{key: {value:,
source:}}``) overrides entries; a measurement made here (``kubescribe plan measure``) writes one.
``--sweep key=v1,v2`` re-runs the plan once per value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.plan.errors import CalibrationError


@dataclass(frozen=True)
class Entry:
    value: float
    source: str
    unit: str = ""


FW = "faster-whisper README benchmark (github.com/SYSTRAN/faster-whisper#benchmark)"
OW = "openai-whisper README, 'Available models and languages' relative speed (github.com/openai/whisper)"
LARGE_RTF = 143.0 / 780.0
"""openai/whisper large-v2, fp16, beam 5: 13 min of audio in 2m23s on an RTX 3070 Ti 8GB."""

DEFAULTS: dict[str, Entry] = {
    "rtf.large-v3": Entry(LARGE_RTF, f"{FW}: openai/whisper large-v2 fp16 beam 5, 13 min in 2m23s; v3 same size"),
    "rtf.medium": Entry(LARGE_RTF / 2, f"{FW} large figure / 2 ({OW}: medium ~2x large)"),
    "rtf.small": Entry(LARGE_RTF / 4, f"{FW} large figure / 4 ({OW}: small ~4x)"),
    "rtf.base": Entry(LARGE_RTF / 7, f"{FW} large figure / 7 ({OW}: base ~7x)"),
    "rtf.tiny": Entry(LARGE_RTF / 10, f"{FW} large figure / 10 ({OW}: tiny ~10x)"),
    "rtf.large-v3-turbo": Entry(LARGE_RTF / 8, f"{FW} large figure / 8 ({OW}: turbo ~8x)"),
    "gpu_speedup": Entry(1.0, "assumption: a whole A100/H100 decodes batch-1 beam-5 Whisper no faster than the "
                         "benchmark's RTX 3070 Ti (latency-bound); swept"),
    "slice_alpha": Entry(0.5, "assumption: a slice with g of 7 compute slices runs at (g/7)^alpha of a whole GPU; "
                         "alpha < 1 because batch-1 decoding does not fill a whole GPU; swept"),
    "model_gb.large-v3": Entry(3.09, "openai-whisper checkpoint large-v3.pt, 2.88 GiB", "GB"),
    "model_gb.medium": Entry(1.53, "openai-whisper checkpoint medium.pt, 1.42 GiB", "GB"),
    "model_gb.small": Entry(0.48, "openai-whisper checkpoint small.pt, 461 MiB", "GB"),
    "download_mb_s": Entry(50.0, "assumption: model download bandwidth per pod (the paper's Jobs download the "
                           "model into an emptyDir at every start, icpe26-k8s-ai-apis whisper-job-*.yml); swept",
                           "MB/s"),
    "model_load_s": Entry(10.0, "assumption: loading a checkpoint from local disk onto the GPU; swept", "s"),
    "audio_fetch_s": Entry(5.0, "assumption: one Earnings-22 MP3 (~50 MB) from GitHub LFS, per recording", "s"),
    "pod_start_s": Entry(5.0, "assumption: container start with the image cached (imagePullPolicy re-check)", "s"),
    "pod_create_s": Entry(0.5, "assumption: job-controller creates the pod after the Job is created/unsuspended",
                          "s"),
    "kueue_admit_s": Entry(1.0, "assumption: Kueue admits and unsuspends a Job after quota frees; swept", "s"),
    "das_slice_s": Entry(15.0, "assumption: DAS creates the MIG slice for a scheduled pod; swept", "s"),
    "earnings22_mean_s": Entry(3427.0, "Earnings-22 (Del Rio et al., 2022): 125 files, 119 hours", "s"),
    "earnings22_spread": Entry(0.3, "assumption: durations uniform within ±30 % of the mean; swept"),
    "split_merge_s": Entry(2.0, "assumption: joining the transcripts of a split recording", "s"),
}  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    entries: Mapping[str, Entry]

    @classmethod
    def default(cls) -> Calibration:
        return cls(dict(DEFAULTS))

    def __getitem__(self, key: str) -> float:
        try:
            return self.entries[key].value
        except KeyError:
            raise CalibrationError(
                f"calibration has no {key!r}: known keys are {', '.join(sorted(self.entries))}"
            ) from None

    def get(self, key: str, default: float) -> float:
        entry = self.entries.get(key)
        return default if entry is None else entry.value

    def rtf(self, model: str) -> float:
        """Real-time factor of ``model``; ``.en`` variants run at the multilingual model's speed."""
        name = model.removesuffix(".en")
        name = "large-v3" if name in ("large", "large-v2") else name
        return self[f"rtf.{name}"]

    def override(self, key: str, value: float, source: str) -> Calibration:
        entries = dict(self.entries)
        unit = entries[key].unit if key in entries else ""
        entries[key] = Entry(value, source, unit)
        return Calibration(entries)

    def merged(self, path: Path) -> Calibration:
        """These entries overridden by a file; every entry in the file must name its source."""
        data = _load(path)
        entries = dict(self.entries)
        for key, raw in data.items():
            if not isinstance(raw, Mapping) or "value" not in raw or not str(raw.get("source", "")).strip():
                raise CalibrationError(f"{path}: entry {key!r} needs a `value` and a non-empty `source`")
            try:
                entries[key] = Entry(float(raw["value"]), str(raw["source"]), str(raw.get("unit", "")))
            except (TypeError, ValueError):
                raise CalibrationError(f"{path}: entry {key!r}: value {raw['value']!r} is not a number") from None
        return Calibration(entries)

    def to_json(self) -> dict[str, dict[str, object]]:
        return {k: {"value": e.value, "source": e.source, "unit": e.unit} for k, e in sorted(self.entries.items())}


def _load(path: Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CalibrationError(f"{path}: not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: a calibration file is a mapping of key -> {{value, source}}")
    return data


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """``key=v1,v2,...`` → (key, values); the error says what the form is."""
    key, sep, values = text.partition("=")
    try:
        parsed = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        parsed = []
    if not sep or not key.strip() or not parsed:
        raise CalibrationError(f"--sweep {text!r}: use key=v1,v2,... with numbers, e.g. slice_alpha=0.25,0.5,1")
    return key.strip(), parsed
