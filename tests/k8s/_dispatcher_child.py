"""A dispatcher on the Kubernetes backend as a process of its own, for a test to ``kill -9``.

``python -m tests.k8s._dispatcher_child EMULATOR_URL NAMESPACE DURABLE READY_FILE`` runs the
real dispatcher service (:func:`services.dispatcher.app.serve`) against kmock's API and the
NATS of ``KUBESCRIBE_NATS_*``, with the same labels and Kueue queue as the tests' in-process
backends, and touches ``READY_FILE`` once it consumes. A SIGKILL leaves everything it held
unacked, exactly like a crashed pod: nothing is handed back.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from kubernetes import client as k8s

from services.common.settings import KubernetesSettings, Settings
from services.dispatcher.app import serve
from services.dispatcher.backends.kubernetes import KubernetesJobBackend

EXTRA_LABELS = {"kubescribe.dev/created-by": "tests"}
"""What ``tests/k8s/conftest.py``'s backends put on their Jobs (the survivor sees the same)."""


async def main(url: str, namespace: str, durable: str, ready_file: Path) -> None:
    configuration = k8s.Configuration()
    configuration.host = url.rstrip("/")
    settings = Settings()
    k8s_settings = KubernetesSettings().model_copy(
        update={"namespace": namespace, "kueue_queue": "team-a", "watch_timeout_s": 2}
    )
    backend = KubernetesJobBackend(k8s_settings, api_client=k8s.ApiClient(configuration), extra_labels=EXTRA_LABELS)
    ready = asyncio.Event()
    task = asyncio.create_task(serve(settings, ready=ready, backend=backend, durable=durable, deliver_new=True))
    await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    ready_file.touch()
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
