"""KubernetesJobBackend against kmock's KubernetesEmulator, with the real ``kubernetes`` client."""

from __future__ import annotations

import asyncio

import pytest
from kmock import KubernetesError, action, resource
from kubernetes import client as k8s

from services.common.errors import PermanentError
from services.common.events import Priority
from services.dispatcher.backends import JobBackend, create
from services.dispatcher.backends.kubernetes import KubernetesApiError, KubernetesJobBackend
from services.dispatcher.backends.manifests import job_name
from services.dispatcher.domain import JobState
from tests.k8s._api import cond, create_workload, jobs_in, patch_job, patch_job_status, patch_workload
from tests.k8s.conftest import EventReader, make_job

pytestmark = pytest.mark.k8s


class TestKubernetesJobBackend:
    def test_registered_and_satisfies_protocol(self, api_client, k8s_settings):
        backend = create("kubernetes", settings=k8s_settings, api_client=api_client)
        assert isinstance(backend, KubernetesJobBackend)
        assert isinstance(backend, JobBackend)

    async def test_submit_creates_suspended_kueue_job(self, emulator, make_backend, namespace):
        backend = make_backend()
        job = make_job(priority=Priority.high, tenant="acme")
        await backend.submit(job)

        [created] = jobs_in(emulator, namespace)
        meta, spec = created["metadata"], created["spec"]
        assert meta["name"] == f"kubescribe-transcribe-{job.job_id}"
        assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert meta["labels"]["kueue.x-k8s.io/priority-class"] == "kubescribe-high"
        assert meta["labels"]["kubescribe.dev/job-id"] == job.job_id
        assert meta["labels"]["kubescribe.dev/recordings"] == "1"
        assert meta["labels"]["kubescribe.dev/created-by"] == "tests"
        assert spec["suspend"] is True
        pod = spec["template"]["spec"]
        [container] = pod["containers"]
        assert container["args"] == ["python", "-m", "services.transcriber", "--job", job.job_id]
        assert container["resources"]["limits"]["nvidia.com/mig-1g.5gb"] == "1"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {"secretRef": {"name": "kubescribe-nats"}} in container["envFrom"]

    async def test_submit_twice_creates_one_job(self, emulator, make_backend, namespace):
        backend = make_backend()
        reader = EventReader(backend)
        await backend.synced()
        job = make_job()
        await backend.submit(job)
        await backend.submit(job)  # a retried dispatch: 409 AlreadyExists is adopted

        assert len(jobs_in(emulator, namespace)) == 1
        assert [e.state for e in await reader.until(job.job_id, JobState.queued)] == [JobState.queued]
        assert [e for e in await reader.quiet() if e.job_id == job.job_id] == []

    async def test_name_collision_with_foreign_job_is_refused(self, emulator, make_backend, namespace, api_client):
        backend = make_backend()
        job = make_job()
        foreign = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name(job.job_id),
                "namespace": namespace,
                "labels": {"kubescribe.dev/job-id": "x"},
            },
            "spec": {"template": {"spec": {"containers": []}}},
        }
        await asyncio.to_thread(k8s.BatchV1Api(api_client).create_namespaced_job, namespace, foreign)
        with pytest.raises(PermanentError, match="belongs to job 'x'"):
            await backend.submit(job)

    async def test_transitions_from_job_and_workload_status(self, emulator, make_backend, namespace, api_client):
        backend = make_backend()
        reader = EventReader(backend)
        await backend.synced()
        job = make_job()
        await backend.submit(job)
        assert (await reader.next()).state is JobState.queued
        [created] = jobs_in(emulator, namespace)
        name = created["metadata"]["name"]

        workload = await create_workload(api_client, namespace, created, [cond("QuotaReserved")])
        await patch_workload(api_client, namespace, workload, [cond("QuotaReserved"), cond("Admitted", "Admitted")])
        admitted = await reader.next()
        assert (admitted.state, admitted.at.year) == (JobState.admitted, 2026)

        await patch_job(api_client, namespace, name, {"spec": {"suspend": False}})
        await patch_job_status(
            api_client, namespace, name, {"status": {"active": 1, "startTime": "2026-01-01T00:00:05Z"}}
        )
        assert (await reader.next()).state is JobState.running

        await patch_job_status(
            api_client,
            namespace,
            name,
            {"status": {"active": 0, "succeeded": 1, "conditions": [cond("Complete", at="2026-01-01T00:01:00Z")]}},
        )
        done = await reader.next()
        assert (done.state, done.exit_code) == (JobState.succeeded, 0)
        assert await reader.quiet() == []

    async def test_failed_job_reports_the_reason(self, emulator, make_backend, namespace, api_client):
        backend = make_backend()
        reader = EventReader(backend)
        await backend.synced()
        job = make_job(profile="cpu")
        await backend.submit(job)
        name = job_name(job.job_id)
        await patch_job(api_client, namespace, name, {"spec": {"suspend": False}})
        await patch_job_status(
            api_client, namespace, name, {"status": {"conditions": [cond("Failed", "DeadlineExceeded", "too slow")]}}
        )
        events = await reader.until(job.job_id, JobState.failed)
        assert [e.state for e in events] == [JobState.queued, JobState.admitted, JobState.failed]
        assert events[-1].reason == "DeadlineExceeded: too slow"

    async def test_eviction_reports_evicted_and_deletes_the_job(self, emulator, make_backend, namespace, api_client):
        backend = make_backend()
        reader = EventReader(backend)
        await backend.synced()
        job = make_job()
        await backend.submit(job)
        [created] = jobs_in(emulator, namespace)
        workload = await create_workload(api_client, namespace, created, [cond("Admitted")])
        await reader.until(job.job_id, JobState.admitted)

        await patch_workload(
            api_client, namespace, workload, [cond("Admitted"), cond("Preempted", "InClusterQueue", "by a high job")]
        )
        evicted = await reader.next()
        assert evicted.state is JobState.evicted
        assert "Preempted" in evicted.reason
        # The old Job is deleted so that only the dispatcher's requeue runs the recordings.
        for _ in range(50):
            if not jobs_in(emulator, namespace):
                break
            await asyncio.sleep(0.1)
        assert jobs_in(emulator, namespace) == []
        assert [e for e in await reader.quiet() if e.job_id == job.job_id] == []

        # The requeued job (a new id, attempt unchanged) goes through as usual.
        again = make_job(recordings=job.recordings)
        await backend.submit(again)
        assert (await reader.until(again.job_id, JobState.queued))[-1].state is JobState.queued

    async def test_restart_adopts_live_jobs_without_duplicates(self, emulator, make_backend, namespace, api_client):
        first = make_backend()
        running, waiting, finished = make_job(), make_job(), make_job()
        for job in (running, waiting, finished):
            await first.submit(job)
        await patch_job(api_client, namespace, job_name(running.job_id), {"spec": {"suspend": False}})
        await patch_job_status(api_client, namespace, job_name(running.job_id), {"status": {"active": 1}})
        await patch_job_status(
            api_client, namespace, job_name(finished.job_id), {"status": {"conditions": [cond("Complete")]}}
        )
        await first.aclose()

        second = make_backend()  # the restarted dispatcher
        assert await second.active() == sorted([running.job_id, waiting.job_id])
        reader = EventReader(second)
        states = {}
        for _ in range(3):
            event = await reader.next()
            states[event.job_id] = event.state
        assert states == {
            running.job_id: JobState.running,
            waiting.job_id: JobState.queued,
            finished.job_id: JobState.succeeded,
        }
        # The dispatcher resubmits what it had planned: nothing is created twice.
        await second.submit(waiting)
        assert len(jobs_in(emulator, namespace)) == 3
        await patch_job_status(
            api_client, namespace, job_name(running.job_id), {"status": {"conditions": [cond("Complete")]}}
        )
        assert (await reader.until(running.job_id, JobState.succeeded))[-1].state is JobState.succeeded

    async def test_deleted_job_fails_but_cancelled_job_does_not(self, emulator, make_backend, namespace, api_client):
        backend = make_backend()
        reader = EventReader(backend)
        await backend.synced()
        lost, cancelled = make_job(), make_job()
        await backend.submit(lost)
        await backend.submit(cancelled)
        await backend.cancel(cancelled.job_id)
        await backend.cancel("unknown-job")  # ignored
        await asyncio.to_thread(k8s.BatchV1Api(api_client).delete_namespaced_job, job_name(lost.job_id), namespace)
        events = await reader.until(lost.job_id, JobState.failed)
        assert "deleted" in events[-1].reason
        assert [e.state for e in reader.seen if e.job_id == cancelled.job_id] == [JobState.queued]
        assert await backend.active() == []

    async def test_forbidden_is_a_clear_permanent_error(self, emulator, make_backend):
        emulator["post", resource("batch", "v1", "jobs")] << KubernetesError(
            status=403,
            reason="Forbidden",
            message='jobs.batch is forbidden: User "system:serviceaccount:ks:kubescribe" cannot create resource "jobs"',
        )
        backend = make_backend()
        with pytest.raises(KubernetesApiError) as info:
            await backend.submit(make_job())
        assert info.value.status == 403
        assert "HTTP 403 Forbidden" in str(info.value)
        assert "cannot create resource" in str(info.value)

    async def test_invalid_profile_is_a_permanent_error(self, make_backend):
        with pytest.raises(PermanentError, match="invalid resource profile 'a100'"):
            await make_backend().submit(make_job(profile="a100"))

    async def test_watch_resumes_after_idle_timeouts(self, emulator, make_backend, namespace, api_client, k8s_settings):
        """A watch that hears nothing for longer than its timeout reconnects; nothing is reported twice."""
        backend = make_backend(settings=k8s_settings.model_copy(update={"watch_timeout_s": 1}))
        reader = EventReader(backend)
        await backend.synced()
        job = make_job()
        await backend.submit(job)
        await reader.next()
        await _until(lambda: _requests(emulator, action.WATCH) >= 2, "a second watch request")
        await patch_job(api_client, namespace, job_name(job.job_id), {"spec": {"suspend": False}})
        await patch_job_status(api_client, namespace, job_name(job.job_id), {"status": {"active": 1}})
        events = await reader.until(job.job_id, JobState.running)
        assert [e.state for e in events] == [JobState.admitted, JobState.running]
        assert await reader.quiet() == []

    async def test_watch_relists_after_410_gone(self, emulator, make_backend, namespace, api_client):
        gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
        emulator[action.WATCH, resource("batch", "v1", "jobs")][:1] << (gone,)
        backend = make_backend()
        reader = EventReader(backend)
        await backend.synced()
        await _until(lambda: _requests(emulator, action.LIST) >= 2, "a second listing after 410")
        job = make_job()
        await backend.submit(job)
        await patch_job(api_client, namespace, job_name(job.job_id), {"spec": {"suspend": False}})
        events = await reader.until(job.job_id, JobState.admitted)
        assert [e.state for e in events] == [JobState.queued, JobState.admitted]

    async def test_iterations_bound_the_reconnect_loop(self, emulator, make_backend):
        """The test hook: with ``_iterations`` a failing watch gives up after that many attempts."""
        emulator[action.LIST, resource("batch", "v1", "jobs")] << KubernetesError(status=500, reason="Boom")
        backend = make_backend(_iterations=2)
        backend.watch()
        [jobs] = [r for r in backend._resources if r.kind == "Job"]
        await _until(lambda: not jobs.thread.is_alive(), "the Job watch thread to end")
        assert _requests(emulator, action.LIST) >= 2


def _requests(emulator, kind) -> int:
    return len(list(emulator[kind, resource("batch", "v1", "jobs")]))


async def _until(check, what: str, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_resubmitting_a_finished_job_reports_its_outcome(emulator, make_backend, namespace, api_client):
    """A retried submit of a job whose Job already failed adopts it and hears the outcome again."""
    backend = make_backend()
    reader = EventReader(backend)
    await backend.synced()
    job = make_job(profile="cpu")
    await backend.submit(job)
    await patch_job_status(api_client, namespace, job_name(job.job_id), {"status": {"conditions": [cond("Failed")]}})
    await reader.until(job.job_id, JobState.failed)
    await backend.submit(job)
    assert [e.state for e in await reader.until(job.job_id, JobState.failed)] == [JobState.queued, JobState.failed]
    assert len(jobs_in(emulator, namespace)) == 1
