"""Stopping a background task within a bound.

Why bounded: a service's shutdown runs inside Kubernetes' grace period (and the embedded stack's
SIGTERM timeout). A background loop that does not finish promptly after ``cancel()`` (a client
library that absorbs the cancellation, a loop starved on a busy machine) must not hold the whole
shutdown hostage: after ``timeout`` it is abandoned with one warning line, and the process goes
on closing its connections.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task | None, *, timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait up to ``timeout`` seconds for it to end; never raises its error."""
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        logger.warning("background task %s did not stop within %.0f s; abandoning it", task.get_name(), timeout)
    elif not task.cancelled() and task.exception() is not None:
        logger.debug("background task %s ended with %r", task.get_name(), task.exception())
