"""Who may act on a recording when several dispatcher replicas run (issue 16, item 3).

Who acts on a recording is whoever holds its AUDIO
message. That lease (``ack_wait``, renewed by in-progress acks) is enough for a replica that
dies, with no second lease in KV or a coordination.k8s.io Lease, because a dispatcher never has
to act on a running Job for it to finish: the Job's transcriber writes the outcome and publishes
TranscriptReady by itself, and nothing here cancels a Job (a returning replica has nothing to
fight over). While a dead replica's messages wait for ``ack_wait`` to expire nobody holds them,
and nothing needs doing: a Job that finishes meanwhile is acked on redelivery (its outcome is in
the status), a Job still running is adopted (its id is in the status and the backend lists it
as active), one that ended without an outcome is re-planned; the only cost is ``ack_wait`` of
latency on a failed Job. Two gaps remain, and are closed here without another store:

- a Job that ends while it is being adopted: its terminal watch event came before the adopter
  tracked it. ``Dispatcher._adopt`` tracks first, then asks the backend again, and settles at once if
  the Job is gone.
- a replica that was not dead but cut off (a long GC pause, a partition) still believes it holds
  messages that were redelivered to another. When one of its Jobs fails, both would re-plan the
  recording into a new Job each. The status KV is the fence: a dispatch writes the new job id
  with compare-and-set only if the status still names the job this replica last saw for the
  recording (:func:`claim`); the loser drops the recording without settling it, and the message
  lease hands it to whoever holds it now. Exactly one new Job is created per failed one.
"""

from __future__ import annotations

from services.common.status import RecordingStage, RecordingStatus

OUTCOMES = (RecordingStage.transcribed, RecordingStage.summarizing, RecordingStage.summarized, RecordingStage.failed)


class NotOwnerError(Exception):
    """Another replica dispatched the recording since this one last looked: it is not ours to plan."""


def claim(status: RecordingStatus, fence: str | None, job_id: str, attempts: int) -> RecordingStatus:
    """The compare-and-set of a dispatch (a pure ``StatusStore.update`` mutation): from the job
    this replica last saw (``fence``) to ``job_id``, never over another's job or an outcome."""
    if status.job_id != fence or status.stage in OUTCOMES:
        raise NotOwnerError(f"status names job {status.job_id} at stage {status.stage.value}, not job {fence}")
    status.job_id, status.attempts = job_id, attempts
    return status.advance(RecordingStage.dispatched)
