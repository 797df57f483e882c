"""A vLLM-compatible inference simulator, in the spirit of llm-d-inference-sim.

It speaks the OpenAI API that the GAIE gateway and the summarizer speak (``/v1/chat/completions``
and ``/v1/completions``, streaming or not; ``/v1/models``; ``/health``) and exports ``/metrics``
with vLLM's metric names, so load tests, the endpoint picker and KEDA see what a vLLM replica
would show, without a GPU or a model:

- time to first token: a constant (``ttft``) plus ``ttft_per_token`` for every prompt token that
  is *not* a prefix-cache hit; the cache holds blocks of ``block_size`` tokens keyed by the hash
  chain of the prefix, as vLLM's automatic prefix caching does, so a shared system prompt is
  paid for once;
- ``itl`` between output tokens; ``max_tokens`` honoured; ``usage`` in the final chunk;
- at most ``max_num_seqs`` running requests, the rest wait in FIFO order (``num_requests_waiting``);
- failure injection: a ``failure_rate`` of responses are 429/503 with ``Retry-After``, and
  ``fault`` makes streams malformed or drop mid-way, to test clients against a bad gateway.

Run it with ``kubescribe sim-llm`` or ``python -m services.runtime.sim``; embed it with
``with SimLlmServer(SimConfig(ttft=0.2)) as sim: sim.base_url``.

The package follows the seams: :mod:`.engine` (the scheduling, timing and cache model, no HTTP),
:mod:`.http` (the OpenAI/vLLM HTTP surface over an engine), :mod:`.server` (running it on
loopback as a :class:`~services.runtime.local_server.LocalServer`) and ``__main__`` (the child
process's command line).
"""

from services.runtime.sim.engine import PrefixCache, SimConfig, SimEngine, tokenize
from services.runtime.sim.http import build_app
from services.runtime.sim.server import SimLlmServer, serve_forever, sim_command

__all__ = [
    "PrefixCache",
    "SimConfig",
    "SimEngine",
    "SimLlmServer",
    "build_app",
    "serve_forever",
    "sim_command",
    "tokenize",
]
