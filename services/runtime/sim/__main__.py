"""``python -m services.runtime.sim``: the simulator as a child process (of SimLlmServer or the stack)."""

from __future__ import annotations

import argparse
import json

from services.runtime.sim.engine import SimConfig
from services.runtime.sim.server import serve_forever


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="vLLM-compatible simulator (child process of SimLlmServer)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--config-json", default="{}")
    args = parser.parse_args(argv)
    values = json.loads(args.config_json)
    if "failure_codes" in values:
        values["failure_codes"] = tuple(values["failure_codes"])
    serve_forever(SimConfig(**values), args.host, args.port)


if __name__ == "__main__":
    _main()
