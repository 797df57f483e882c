"""Job specs (and their last observed state) in the ``jobs`` KV bucket.

The spec under key ``<job_id>`` is what ``python -m services.transcriber --job <job_id>`` reads,
the same from a local subprocess and from a pod. The backend's last reported state goes under
``<job_id>.state`` so that ``kubescribe jobs`` can show jobs without asking the backend.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from services.common.jobspec import parse_job
from services.common.topology import JOBS_BUCKET
from services.dispatcher.domain import JobEvent, TranscriptionJob

STATE_SUFFIX = ".state"


class JobStore:
    """Read and write job specs; every write is a plain put (job ids are never reused)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> JobStore:
        return cls(await js.key_value(JOBS_BUCKET))

    async def put(self, job: TranscriptionJob) -> None:
        await self.kv.put(job.job_id, job.model_dump_json().encode())

    async def get(self, job_id: str) -> TranscriptionJob | None:
        try:
            entry = await self.kv.get(job_id)
        except KeyNotFoundError:
            return None
        return parse_job(entry.value) if entry.value else None

    async def put_state(self, event: JobEvent) -> None:
        await self.kv.put(event.job_id + STATE_SUFFIX, event.model_dump_json().encode())

    async def get_state(self, job_id: str) -> JobEvent | None:
        try:
            entry = await self.kv.get(job_id + STATE_SUFFIX)
        except KeyNotFoundError:
            return None
        return JobEvent.model_validate_json(entry.value) if entry.value else None

    async def job_ids(self) -> list[str]:
        """Every stored job id, oldest first (ids are ULIDs)."""
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return []
        return sorted(k for k in keys if not k.endswith(STATE_SUFFIX))
