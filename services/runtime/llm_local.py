"""The real local model server: llama.cpp (``xllamacpp``) serving the bundled GGUF over HTTP.

``with LocalLlmServer() as server: server.base_url`` gives an OpenAI-compatible endpoint
(``/v1/chat/completions`` with SSE streaming, ``/v1/models``, ``/health``) on 127.0.0.1, the
embedded stand-in for the GAIE/llm-d gateway. xllamacpp's server listens in native threads, so
it does not hold the GIL while it generates. ``LocalLlmServer(spec=MODELS["1.5b"])`` serves
another of :data:`~services.runtime.models.MODELS` (``kubescribe llm-server --model 1.5b``).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
from pathlib import Path
from typing import Any

from services.common.errors import ConfigurationError
from services.runtime.local_server import LocalServer
from services.runtime.models import DEFAULT_MODEL, ModelSpec, chunks_available, ensure_model

logger = logging.getLogger(__name__)


def llm_available(spec: ModelSpec = DEFAULT_MODEL) -> bool:
    """True when xllamacpp and ``spec``'s chunk packages (its extra, ``llm`` for the default) are installed."""
    return importlib.util.find_spec("xllamacpp") is not None and chunks_available(spec)


class LocalLlmServer(LocalServer):
    """A llama.cpp server in this process; stopped (and its memory freed) on exit."""

    name = "llama.cpp server"
    ready_timeout = 120.0

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        spec: ModelSpec = DEFAULT_MODEL,
        port: int = 0,
        threads: int = 2,
        n_ctx: int = 4096,
        parallel: int = 4,
        host: str = "127.0.0.1",
        alias: str | None = None,
    ) -> None:
        """``spec`` is the model to assemble and serve; ``model_path``, when given, is served instead
        (a GGUF assembled elsewhere, as the tests and ``bench/summaries.py`` do) and ``spec`` only
        names the extra in errors."""
        super().__init__(host, port)
        self.model_path = model_path
        self.spec = spec
        self.threads = threads
        self.n_ctx = n_ctx
        self.parallel = parallel
        self.alias = alias or spec.name
        self._server: Any = None
        self._address: str | None = None

    @property
    def url(self) -> str:
        if self._address is None:
            raise RuntimeError("LocalLlmServer is not running")
        return self._address.rstrip("/")

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def model(self) -> str:
        """The name the server reports (llama.cpp answers with the model path)."""
        return str(self.model_path)

    def launch(self) -> None:
        try:
            import xllamacpp
        except ImportError as exc:
            raise ConfigurationError(f"xllamacpp is not installed: {self.spec.install_hint}") from exc
        self.model_path = Path(self.model_path) if self.model_path else ensure_model(spec=self.spec)
        if not self.model_path.is_file():
            raise ConfigurationError(f"model file {self.model_path} does not exist")
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        # Continuous batching over ``parallel`` slots that share one KV cache: requests that arrive
        # together prefill and decode together instead of queueing behind each other, which is what
        # cuts TTFT when the summarizer sends several transcripts at once. Each request may still use
        # the whole ``n_ctx``; twice that in total leaves room for several transcripts at once.
        params.n_parallel = max(1, self.parallel)
        params.kv_unified = True
        params.n_ctx = self.n_ctx * 2 if self.parallel > 1 else self.n_ctx
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.hostnames = [self.host]
        if self.port:
            params.port = self.port
        with contextlib.suppress(AttributeError, TypeError):
            params.endpoint_metrics = True
        logger.info("starting llama.cpp on %s (%d threads, n_ctx %d)", self.model_path, self.threads, self.n_ctx)
        self._server = xllamacpp.Server(params)
        self._address = self._server.listening_address

    def failed(self) -> str | None:
        return None if self._server is not None else "llama.cpp server stopped"

    def stop(self) -> None:
        """Dropping the last reference stops xllamacpp's server (its destructor joins the loop)."""
        if self._server is not None:
            self._server = None
            gc.collect()
        self._address = None
