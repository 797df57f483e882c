"""Driving the GAIE experiment with GuideLLM 0.8.1, the paper's own client, in its own venv.

GuideLLM lives in ``.tools/guidellm`` (``make guidellm``; its pinned dependencies, torch among
them, would fight the project's). Offline it needs a local tokenizer: :func:`build_tokenizer`
writes a word-level ``tokenizer.json`` with the ``tokenizers`` library (words and punctuation,
the simulator's own token definition, over the workload's vocabulary), which GuideLLM loads with
``kind=huggingface_auto,model=<dir>``. The prompts go in as a JSONL file (``prompt``,
``output_tokens_count``); each concurrency level is one ``guidellm run`` with
``--profile kind=concurrent,streams=N --constraint kind=max_requests,count=N``; the per-request
TTFTs are read back from GuideLLM's JSON output and returned in the shape of
:class:`~loadgen.results.LlmResult`, so both clients' records are compared on the same fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from loadgen.errors import TargetError
from loadgen.results import LlmResult
from loadgen.trace import TraceItem
from services.runtime.sim.engine import tokenize

TOOLS = Path(__file__).resolve().parent.parent / ".tools" / "guidellm"


def guidellm_binary() -> Path:
    binary = Path(os.environ.get("KUBESCRIBE_GUIDELLM", TOOLS / "bin" / "guidellm"))
    if not binary.exists():
        raise TargetError(f"GuideLLM is not installed at {binary}: run `make guidellm` (creates .tools/guidellm)")
    return binary


def build_tokenizer(directory: Path, texts: list[str]) -> Path:
    """A word-level fast tokenizer whose vocabulary covers ``texts`` (what GuideLLM counts with)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab: dict[str, int] = {"[UNK]": 0}
    for text in texts:
        for token in tokenize(text):
            vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "model_max_length": 1 << 20})
    )
    return directory


def _run_level(
    binary: Path, base_url: str, data: Path, tokenizer: Path, model: str, streams: int, count: int, out: Path
) -> list[dict[str, Any]]:
    target = base_url.removesuffix("/v1")
    argv = [
        str(binary), "run",
        "--backend", f"kind=openai_http,target={target},model={model}",
        "--profile", f"kind=concurrent,streams={streams}",
        "--constraint", f"kind=max_requests,count={count}",
        "--data", f"kind=json_file,path={data}",
        "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
        "--output", f"kind=json,path={out}",
        "--disable-console-interactive",
    ]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": "",
        # One async worker holds these few streams (GuideLLM puts up to 1Ki per worker); its default
        # of up to 10 spawned workers, each importing torch, costs more than the run on 2 cores.
        "GUIDELLM__MAX_WORKER_PROCESSES": os.environ.get("GUIDELLM__MAX_WORKER_PROCESSES", str(max(1, streams // 256))),
    }
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout)[-2000:]
        raise TargetError(f"guidellm run failed (exit {done.returncode}): {tail}")
    return _requests(json.loads(out.read_text()))


def _requests(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Successful and errored per-request stats of every benchmark in a GuideLLM JSON report."""
    rows: list[dict[str, Any]] = []
    for benchmark in report.get("benchmarks", []):
        requests = benchmark.get("requests", {})
        for status in ("successful", "errored", "incomplete"):
            for request in requests.get(status) or []:
                rows.append({**request, "_status": status})
    return rows


def _seconds(request: dict[str, Any], *names: str) -> float | None:
    for name in names:
        value = request.get(name)
        if value is not None:
            return float(value) / (1000.0 if name.endswith("_ms") else 1.0)
    return None


def _result(request: dict[str, Any], level: int, index: int) -> LlmResult:
    ttft = _seconds(request, "time_to_first_token_ms", "time_to_first_token", "ttft_ms")
    latency = _seconds(request, "request_latency", "request_latency_ms", "latency")
    out_tokens = request.get("output_tokens") or 0
    error = None if request["_status"] == "successful" else (request.get("error") or request["_status"])
    return LlmResult(
        id=f"g{level}-{index:05d}",
        concurrency=level,
        start_s=0.0,
        ttft_s=ttft,
        latency_s=latency,
        itl_s=_seconds(request, "inter_token_latency_ms"),
        tokens_in=request.get("prompt_tokens"),
        tokens_out=int(out_tokens),
        error=error,
    )


def drive_guidellm(base_url: str, prompts: list[TraceItem], options: Any, model: str):
    """Warm-up, then each level, through GuideLLM; returns (warm-up results, measured results)."""
    binary = guidellm_binary()
    with tempfile.TemporaryDirectory(prefix="kubescribe-guidellm-") as tmp:
        work = Path(tmp)
        texts = [p.prompt or "" for p in prompts]
        tokenizer = build_tokenizer(work / "tokenizer", texts)

        def data(name: str, max_tokens: int, count: int) -> Path:
            path = work / f"{name}.json"
            rows = [{"prompt": texts[i % len(texts)], "output_tokens_count": max_tokens} for i in range(count)]
            path.write_text(json.dumps(rows))
            return path

        warm = _run_level(
            binary, base_url, data("warmup", 1, options.warmup_requests), tokenizer, model,
            options.warmup_concurrency, options.warmup_requests, work / "warmup-out.json",
        )  # fmt: skip
        warmup = [_result(r, options.warmup_concurrency, i) for i, r in enumerate(warm)]
        results: list[LlmResult] = []
        for level in options.concurrencies:
            count = options.level_requests
            rows = _run_level(
                binary, base_url, data(f"c{level}", options.max_tokens, count), tokenizer, model,
                level, count, work / f"c{level}-out.json",
            )  # fmt: skip
            results.extend(_result(r, level, i) for i, r in enumerate(rows))
        return warmup, results
