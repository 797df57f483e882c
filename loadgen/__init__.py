"""kubescribe's load generator: traces, open-loop replay, the LLM benchmark and reports.

Public names are imported lazily, so ``kubescribe --help`` does not pay for httpx, nats-py and
matplotlib just because the ``loadgen`` commands are registered.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TraceItem": "loadgen.trace",
    "read_trace": "loadgen.trace",
    "write_trace": "loadgen.trace",
    "arrival_offsets": "loadgen.make",
    "make_trace": "loadgen.make",
    "preset": "loadgen.make",
    "materialize": "loadgen.audio",
    "HttpTarget": "loadgen.targets",
    "NatsTarget": "loadgen.targets",
    "ReplayOptions": "loadgen.replay",
    "replay": "loadgen.replay",
    "LlmOptions": "loadgen.llm",
    "benchmark": "loadgen.llm",
    "Run": "loadgen.results",
    "read_run": "loadgen.results",
    "write_run": "loadgen.results",
    "summarize": "loadgen.report",
    "write_report": "loadgen.report",
    "Progress": "services.common.progress",
    "NullProgress": "services.common.progress",
    "LoadgenError": "loadgen.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'loadgen' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
