"""Every process's logging: a NATS error is one warning line, any other error keeps its traceback."""

from __future__ import annotations

import io
import logging

import nats.errors
import pytest

from services.common.logs import OneLineNatsErrors, configure_logging


@pytest.fixture
def root_stream(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """A fresh root logger configured as a process configures it, writing into a buffer."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    stream = io.StringIO()

    def basic_config(format: str, **_: object) -> None:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(format))
        root.addHandler(handler)

    monkeypatch.setattr(logging, "basicConfig", basic_config)
    configure_logging("INFO")
    assert any(isinstance(f, OneLineNatsErrors) for h in root.handlers for f in h.filters)
    return stream


def test_a_nats_error_is_one_warning_line_and_a_bug_keeps_its_traceback(root_stream: io.StringIO) -> None:
    logger = logging.getLogger("tests.logs")
    for error in (nats.errors.TimeoutError(), ValueError("a bug")):
        try:
            raise error
        except Exception:
            logger.exception("could not submit job j1; re-planning")
    nats_line, *bug = root_stream.getvalue().splitlines()
    assert " WARNING " in nats_line and nats_line.endswith(
        "could not submit job j1; re-planning (TimeoutError: nats: timeout)"
    )
    assert " ERROR " in bug[0] and "Traceback" in "\n".join(bug) and bug[-1] == "ValueError: a bug"
