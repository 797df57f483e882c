"""The one logging setup every kubescribe process runs at start (CLI, ingest, transcriber Job).

One format and one knob, ``KUBESCRIBE_LOG_LEVEL`` (default ``WARNING``: a CLI's output is its
result, and services log what needs attention), so the logs of every process read alike and a
single environment variable turns on debug logging across a whole local stack.
"""

from __future__ import annotations

import logging
import os

LEVEL_ENV = "KUBESCRIBE_LOG_LEVEL"
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str | int | None = None) -> None:
    """Configure the root logger once: ``level``, else ``$KUBESCRIBE_LOG_LEVEL``, else WARNING."""
    if level is None:
        level = os.environ.get(LEVEL_ENV) or "WARNING"
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, format=FORMAT)
