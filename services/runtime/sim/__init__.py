"""A vLLM-compatible inference simulator, in the spirit of llm-d-inference-sim.

It speaks the OpenAI API that the GAIE gateway and the summarizer speak (``/v1/chat/completions``
and ``/v1/completions``, streaming or not; ``/v1/models``; ``/health``) and exports ``/metrics``
with vLLM's metric names, so load tests, the endpoint picker and KEDA see what a vLLM replica
would show, without a GPU or a model:

- time to first token: queueing, then a constant (``ttft``) plus ``ttft_per_token`` for every
  prompt token that is *not* a prefix-cache hit (one prefill at a time with ``prefill_serial``);
  the cache holds blocks of ``block_size`` tokens keyed by the hash chain of the prefix, as vLLM's
  automatic prefix caching does, so a repeated transcript is paid for once per replica;
- inter-token latency ``itl + itl_per_seq x running``: a bigger decode batch is slower;
  ``max_tokens`` honoured; ``usage`` in the final chunk;
- the KV cache is the binding limit: a request needs ceil((prompt + output) / block_size) blocks
  of ``kv_cache_blocks`` and waits (FIFO, ``num_requests_waiting``) until they and one of the
  ``max_num_seqs`` (256, vLLM's default) sequence slots are free;
- ``time_scale`` shrinks every simulated duration, so a sweep of the paper's size runs in minutes;
  the calibration (``calibration.json``) names the source of every number;
- failure injection: a ``failure_rate`` of responses are 429/503 with ``Retry-After``, and
  ``fault`` makes streams malformed or drop mid-way, to test clients against a bad gateway.

Run it with ``kubescribe sim-llm`` or ``python -m services.runtime.sim``; embed it with
``with SimLlmServer(SimConfig(ttft=0.2)) as sim: sim.base_url``.

The package follows the seams: :mod:`.engine` (the scheduling, timing and cache model, no HTTP),
:mod:`.http` (the OpenAI/vLLM HTTP surface over an engine), :mod:`.server` (running it on
loopback as a :class:`~services.runtime.local_server.LocalServer`) and ``__main__`` (the child
process's command line).
"""

from services.runtime.sim.engine import SimConfig, SimEngine, tokenize
from services.runtime.sim.http import build_app
from services.runtime.sim.kv import KvBlockPool
from services.runtime.sim.server import SimLlmServer, serve_forever, sim_command

__all__ = [
    "KvBlockPool",
    "SimConfig",
    "SimEngine",
    "SimLlmServer",
    "build_app",
    "serve_forever",
    "sim_command",
    "tokenize",
]
