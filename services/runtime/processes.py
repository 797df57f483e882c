"""Stopping child processes the same way everywhere: SIGTERM, a grace period, then SIGKILL.

nats-server flushes JetStream files on SIGTERM and the Python services shut down their
consumers cleanly, so every stop asks politely first; a process that hangs past the grace
period is killed so that no test and no ``kubescribe up`` ever leaves one behind.
"""

from __future__ import annotations

import subprocess


def terminate(process: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """Stop ``process`` and reap it; returns its exit code (None if there was no process)."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
