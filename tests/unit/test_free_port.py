"""free_port: ports for servers about to start, outside the pool outgoing connections draw from."""

from __future__ import annotations

import socket

import pytest

from services.runtime import processes
from services.runtime.processes import _ephemeral_low, free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)  # never the same twice in one process
    low = _ephemeral_low()
    assert all(1024 <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # free when handed out


def _unused_in_span(*, besides: int = 0) -> int:
    """A bindable port below the ephemeral range that this process never handed out."""
    low = _ephemeral_low()
    for port in range(low - 1, low - 2000, -1):
        if port == besides or port in processes._HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port below the ephemeral range")


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", _unused_in_span()))
        busy.listen()
        taken = busy.getsockname()[1]
        free = _unused_in_span(besides=taken)
        draws = iter([taken, taken, free])
        monkeypatch.setattr(processes.random, "randrange", lambda *_: next(draws))
        assert free_port() == free
