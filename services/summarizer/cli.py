"""``kubescribe summarize``, ``kubescribe sim-llm`` and ``kubescribe llm-server``.

Examples::

    kubescribe sim-llm --port 8000 --ttft 0.2 --itl 0.02 --max-num-seqs 8
    kubescribe sim-llm --failure-rate 0.3 --failure-codes 429,503     # a saturated gateway
    kubescribe llm-server --port 8000 --threads 2                      # the real local model
    kubescribe llm-server --model 1.5b                                 # the 1.5B (kubescribe[llm-1-5b])
    KUBESCRIBE_LLM_BASE_URL=http://127.0.0.1:8000/v1 kubescribe summarize transcript.json
    kubescribe summarize 01JDZ8W3V0R4N8M0Q2K5T7Y9AB                     # a recording's transcript
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from services.common.errors import ConfigurationError, MissingObjectError


def _parse_codes(value: str) -> tuple[int, ...]:
    try:
        codes = tuple(int(code) for code in value.split(",") if code.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"--failure-codes must be comma-separated HTTP codes, got {value!r}") from exc
    if not codes or any(code < 400 or code > 599 for code in codes):
        raise typer.BadParameter(f"--failure-codes must be 4xx/5xx codes, got {value!r}")
    return codes


def sim_llm(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", envvar="KUBESCRIBE_LLM_PORT", help="TCP port."),
    ttft: float = typer.Option(0.0, "--ttft", min=0, help="Constant time to first token (s)."),
    ttft_per_token: float = typer.Option(0.0, "--ttft-per-token", min=0, help="Prefill per uncached prompt token (s)."),
    itl: float = typer.Option(0.0, "--itl", min=0, help="Inter-token latency (s)."),
    max_num_seqs: int = typer.Option(256, "--max-num-seqs", min=1, help="Requests running at once (vLLM: 256)."),
    max_model_len: int = typer.Option(32768, "--max-model-len", min=16, help="Context length (tokens)."),
    failure_rate: float = typer.Option(0.0, "--failure-rate", min=0, max=1, help="Fraction of injected errors."),
    failure_codes: str = typer.Option("429,503", "--failure-codes", help="Codes to inject, comma-separated."),
    mode: str = typer.Option("random", "--mode", help="echo | random"),
    model: str = typer.Option("kubescribe-local", "--model", envvar="KUBESCRIBE_LLM_MODEL", help="Served model name."),
) -> None:
    """Serve the vLLM-compatible simulator (OpenAI API, vLLM /metrics) until Ctrl-C."""
    from services.runtime.sim import SimConfig, serve_forever

    if mode not in ("echo", "random"):
        raise typer.BadParameter(f"--mode must be echo or random, got {mode!r}")
    config = SimConfig(
        model=model,
        ttft=ttft,
        ttft_per_token=ttft_per_token,
        itl=itl,
        max_num_seqs=max_num_seqs,
        max_model_len=max_model_len,
        failure_rate=failure_rate,
        failure_codes=_parse_codes(failure_codes),
        mode=mode,  # type: ignore[arg-type]
    )
    typer.echo(f"sim-llm serving {model} on http://{host}:{port}/v1 (metrics on /metrics)")
    serve_forever(config, host, port)


def llm_server(
    port: int = typer.Option(8000, "--port", envvar="KUBESCRIBE_LLM_PORT", help="TCP port (0 picks one)."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for llama.cpp."),
    n_ctx: int = typer.Option(4096, "--ctx", min=512, help="Context length (tokens)."),
    model: str = typer.Option(
        "0.5b",
        "--model",
        envvar="KUBESCRIBE_LLM_LOCAL_MODEL",
        help="Which local model: 0.5b (the llm extra) or 1.5b (the llm-1-5b extra).",
    ),
) -> None:
    """Serve a local model (llama.cpp) on 127.0.0.1 until Ctrl-C."""
    import time

    from services.runtime.llm_local import LocalLlmServer
    from services.runtime.models import model_spec

    spec = model_spec(model)  # before anything loads: a typo is one line, not a model load
    with LocalLlmServer(spec=spec, port=port, threads=threads, n_ctx=n_ctx) as server:
        typer.echo(f"llm-server serving {server.model_path} on {server.base_url}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def summarize(
    target: str = typer.Argument(..., help="A transcript file (Transcript JSON or plain text) or a recording id."),
    json_output: bool = typer.Option(False, "--json", help="Print the Summary document as JSON."),
) -> None:
    """Summarize one transcript with the configured LLM (KUBESCRIBE_LLM_BASE_URL) and print it."""
    summary = asyncio.run(_summarize(target))
    if json_output:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        typer.echo(summary["text"])
        typer.echo(
            f"\n[{summary['model']}: ttft {summary['ttft_s']:.3f}s, generation {summary['generation_s']:.3f}s, "
            f"{summary['tokens_in']} tokens in, {summary['tokens_out']} out, {summary['requests']} request(s)]",
            err=True,
        )


async def _load_transcript(target: str):
    from pydantic import ValidationError

    from services.common.documents import Transcript
    from services.common.ids import is_valid_id
    from services.summarizer.prompts import transcript_from_text

    path = Path(target)
    if path.is_file():
        raw = path.read_text(errors="replace")
        if path.suffix == ".json" or raw.lstrip().startswith("{"):
            try:
                return Transcript.model_validate_json(raw)
            except ValidationError as exc:
                raise typer.BadParameter(f"{path} is not a Transcript JSON document: {exc.errors()[0]['msg']}") from exc
        return transcript_from_text(raw)
    if not is_valid_id(target):
        raise typer.BadParameter(f"{target!r} is neither an existing file nor a recording id")
    from services.common.nats_client import connect
    from services.common.status import StatusStore
    from services.common.storage import get_bytes

    nc = await connect(name="kubescribe-summarize")
    try:
        js = nc.jetstream()
        status = await (await StatusStore.open(js)).get(target)
        if status is None:
            raise MissingObjectError(f"recording {target} does not exist")
        if status.transcript is None:
            raise MissingObjectError(f"recording {target} has no transcript yet (stage {status.stage.value})")
        return Transcript.model_validate_json(await get_bytes(js, status.transcript))
    finally:
        await nc.close()


async def _summarize(target: str) -> dict:
    from services.common.settings import LlmSettings, SummarizerSettings
    from services.summarizer.client import ChatClient, RetryPolicy
    from services.summarizer.prompts import PromptBuilder
    from services.summarizer.settings import PromptSettings
    from services.summarizer.structured import structured_fields, summarize_structured

    transcript = await _load_transcript(target)
    llm = LlmSettings()
    try:
        builder = PromptBuilder(llm, PromptSettings())
        builder.input_budget  # noqa: B018 - validates the budget early
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    async with ChatClient(llm, retry=RetryPolicy.from_settings(SummarizerSettings())) as client:
        structured = await summarize_structured(client, builder, transcript)
    outcome = structured.outcome
    return {
        "recording_id": transcript.recording_id,
        "text": outcome.text,
        "model": outcome.model,
        "ttft_s": outcome.ttft_s,
        "generation_s": outcome.generation_s,
        "tokens_in": outcome.tokens_in,
        "tokens_out": outcome.tokens_out,
        "requests": outcome.requests,
        **structured_fields(structured.content),
    }


def register(app: typer.Typer) -> None:
    app.command("summarize")(summarize)
    app.command("sim-llm")(sim_llm)
    app.command("llm-server")(llm_server)
