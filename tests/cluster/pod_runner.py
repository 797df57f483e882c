"""``PodRunner``: the Job controller and the kubelet for the cluster harness, on kmock.

For every unsuspended, unfinished Job it runs the pod template's one container: ``command`` +
``args``, the environment resolved from the emulated API (:func:`tests.cluster.env.resolve_env`),
each volume a directory (``emptyDir`` per pod, a PVC's per claim, shared), and the security
context checked where it can be: ``runAsNonRoot`` fails the pod when the process would run as
root, ``runAsUser``/``runAsGroup``/``fsGroup`` are really applied when this process may switch
user (when the interpreter is not reachable by that uid, e.g. under a 0700 home, the pod runs
as this process's user and says so in its log and :attr:`PodRunner.identity_skipped`), and
volume directories are owned by the fsGroup. It writes what the
Job controller would: ``startTime``, ``active``/``ready``, ``succeeded``/``failed`` and the
``Complete``/``Failed`` conditions with ``completionTime``, retrying a failed pod up to
``backoffLimit`` (``podFailurePolicy`` rules on exit codes are honoured). A Job suspended again
(Kueue's eviction) or deleted has its process stopped, as the kubelet kills the pod.

Where it runs: the built image (``kubescribe:test``, built by the image tests) under ``buildah run``
when buildah and that image exist, else a local process of this checkout's Python, with paths
under a mount rewritten to the mount's directory. Not emulated: ``readOnlyRootFilesystem`` and
dropped capabilities on the local path, ``activeDeadlineSeconds``, resource limits, pod conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from services.common.events import utcnow
from tests.cluster.env import ContainerConfigError, resolve_env
from tests.k8s._api import Loop, cond, list_jobs, patch_job_status

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("KUBESCRIBE_TEST_IMAGE", "localhost/kubescribe:dev")
"""The image the tests build (``tests/conftest.py``'s ``image`` fixture): one name, so the in-image
pod test runs the image the session built (it used to look for a tag nothing built, and skipped)."""


def image_available(image: str = IMAGE) -> bool:
    """Whether ``buildah run`` of an image named by ``KUBESCRIBE_TEST_IMAGE`` is possible here.

    Only an image named on purpose moves every cluster test's pods into it: whatever a developer
    built last is not picked up by accident. The in-image pod test asks for the image explicitly."""
    if shutil.which("buildah") is None or os.environ.get("KUBESCRIBE_TEST_IMAGE") is None:
        return False
    probe = subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True, check=False)
    return probe.returncode == 0


@dataclass
class Pod:
    """One run of a Job's pod template."""

    job: str
    index: int
    process: asyncio.subprocess.Process
    log: Path
    container: str | None = None
    """The buildah working container, when run in the image."""


@dataclass
class _Launch:
    """What starting one pod needs, resolved from the Job (environment, mounts, identity)."""

    job: str
    index: int
    command: list[str]
    env: dict[str, str]
    mounts: dict[str, Path]
    uid: int | None
    gid: int | None
    groups: list[int]
    log: Path


@dataclass
class _JobRun:
    failed: int = 0
    pod: Pod | None = None
    done: bool = False
    pods: list[Pod] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    """One per pod attempt, a pod that never started included (its log says why)."""


class PodRunner:
    """Runs the Jobs' pods of ``namespace`` (see the module docstring)."""

    def __init__(
        self, api: k8s.ApiClient, namespace: str, workdir: Path, *, in_image: bool | None = None, poll_s: float = 0.1
    ) -> None:
        self.api, self.namespace, self.workdir, self.poll_s = api, namespace, workdir, poll_s
        self.in_image = image_available() if in_image is None else in_image
        self.runs: dict[str, _JobRun] = {}
        self.started: list[str] = []
        self.identity_skipped: list[str] = []
        """Jobs whose pod ran as this process's user because the target uid cannot reach the interpreter."""
        """Job names, once per pod started (a Job run twice appears twice)."""
        self._loop = Loop(self.reconcile, "pod-runner", poll_s)

    def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.stop()
        for run in self.runs.values():
            if run.pod is not None:
                await self._kill(run.pod)

    def running(self, job: str) -> bool:
        run = self.runs.get(job)
        return run is not None and run.pod is not None

    def logs(self, job: str) -> str:
        return "\n".join(log.read_text() for log in self.runs[job].logs if log.exists())

    async def reconcile(self) -> None:
        jobs = {j["metadata"]["name"]: j for j in await asyncio.to_thread(list_jobs, self.api, self.namespace)}
        for name, run in self.runs.items():
            if run.pod is not None and (name not in jobs or (jobs[name].get("spec") or {}).get("suspend")):
                await self._kill(run.pod)  # evicted (suspended again) or deleted: the kubelet kills the pod
                run.pod = None
                if name in jobs:
                    await self._status(name, {"active": 0, "ready": 0, "startTime": None})
        for name, job in jobs.items():
            run = self.runs.setdefault(name, _JobRun())
            if run.pod is not None and run.pod.process.returncode is not None:
                await self._finished(name, job, run)
            if run.pod is None and not run.done and not (job.get("spec") or {}).get("suspend"):
                await self._start(name, job, run)

    # --- starting a pod --------------------------------------------------------------------
    async def _start(self, name: str, job: dict[str, Any], run: _JobRun) -> None:
        spec = job["spec"]["template"]["spec"]
        [container] = spec["containers"]  # kubescribe's Jobs have one container
        index = len(run.logs)
        log = self.workdir / "logs" / f"{name}-{index}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        run.logs.append(log)
        try:
            env = await asyncio.to_thread(resolve_env, self.api, self.namespace, container)
            uid, gid, groups = _identity(spec.get("securityContext") or {}, container.get("securityContext") or {})
            mounts = self._volumes(name, index, spec, container, uid, groups)
        except ContainerConfigError as exc:
            log.write_text(f"CreateContainerConfigError: {exc}\n")
            run.done = True
            await self._status(name, _failed("CreateContainerConfigError", str(exc)))
            return
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        launch = _Launch(name, index, command, env, mounts, uid, gid, groups, log)
        pod = await (self._start_in_image(launch) if self.in_image else self._start_local(launch))
        run.pod = pod
        run.pods.append(pod)
        self.started.append(name)
        now = _now()
        await self._status(name, {"startTime": now, "active": 1, "ready": 1})

    def _volumes(
        self, name: str, index: int, spec: dict[str, Any], container: dict[str, Any], uid: int | None, groups: list[int]
    ) -> dict[str, Path]:
        """mountPath → directory; emptyDirs are the pod's own, a PVC's directory is shared."""
        dirs: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                path = self.workdir / "pvc" / volume["persistentVolumeClaim"]["claimName"]
            elif "emptyDir" in volume:
                path = self.workdir / "pods" / f"{name}-{index}" / volume["name"]
            else:
                raise ContainerConfigError(f"volume {volume['name']}: only emptyDir and PVC volumes are emulated")
            path.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0 and uid is not None:
                os.chown(path, uid, groups[0] if groups else -1)
                path.chmod(0o2775)
            dirs[volume["name"]] = path
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in dirs:
                raise ContainerConfigError(f"volumeMount {mount['name']}: no such volume")
            mounts[mount["mountPath"]] = dirs[mount["name"]]
        return mounts

    async def _start_local(self, launch: _Launch) -> Pod:
        uid = os.geteuid() if launch.uid is None else launch.uid  # no runAsUser: whoever runs this
        if uid != os.geteuid() and os.geteuid() != 0:
            raise RuntimeError(f"the pod runs as uid {uid}; this harness runs as uid {os.geteuid()} and cannot switch")
        env = {k: _rewrite(v, launch.mounts) for k, v in launch.env.items()}
        command = list(launch.command)
        if command and command[0] in ("python", "python3"):
            command[0] = sys.executable
        command = [_rewrite(arg, launch.mounts) for arg in command]
        env.setdefault("PATH", f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        env["PYTHONPATH"] = str(REPO)  # the image has the package installed; here the checkout is it
        switch = os.geteuid() == 0 and uid != 0
        with launch.log.open("wb") as out:

            async def spawn(as_user: bool) -> asyncio.subprocess.Process:
                return await asyncio.create_subprocess_exec(
                    *command,
                    env=env,
                    cwd=str(launch.mounts.get("/tmp", REPO)),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    user=uid if as_user else None,
                    group=launch.gid if as_user and launch.gid is not None else None,
                    extra_groups=launch.groups if as_user else None,
                    start_new_session=True,
                )

            try:
                process = await spawn(switch)
            except PermissionError as exc:  # this checkout's Python is not reachable by that uid
                out.write(
                    f"pod-runner: runAsUser {uid} not applied here ({exc}); running as uid {os.geteuid()}\n".encode()
                )
                out.flush()
                self.identity_skipped.append(launch.job)
                process = await spawn(False)
        return Pod(launch.job, launch.index, process, launch.log)

    async def _start_in_image(self, launch: _Launch) -> Pod:
        made = await asyncio.to_thread(
            subprocess.run, ["buildah", "from", "--pull-never", IMAGE], capture_output=True, text=True, check=True
        )
        container = made.stdout.strip()
        argv = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
        if launch.uid is not None:
            argv += ["--user", f"{launch.uid}:{launch.gid if launch.gid is not None else launch.uid}"]
        for path, directory in launch.mounts.items():
            argv += ["-v", f"{directory}:{path}"]
        for key, value in launch.env.items():
            argv += ["--env", f"{key}={value}"]
        with launch.log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *argv, container, "--", *launch.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return Pod(launch.job, launch.index, process, launch.log, container=container)

    # --- ending a pod ----------------------------------------------------------------------
    async def _finished(self, name: str, job: dict[str, Any], run: _JobRun) -> None:
        pod, run.pod = run.pod, None
        assert pod is not None
        await self._cleanup(pod)
        code = pod.process.returncode
        now = _now()
        if code == 0:
            run.done = True
            done = [cond("SuccessCriteriaMet", "CompletionsReached", "", now), cond("Complete", "", "", now)]
            await self._status(
                name, {"active": 0, "ready": 0, "succeeded": 1, "completionTime": now, "conditions": done}
            )
            return
        action = _policy_action(job, code)
        if action != "Ignore":
            run.failed += 1
        limit = int((job.get("spec") or {}).get("backoffLimit", 6))
        if action == "FailJob":
            run.done = True
            message = f"Container {job['spec']['template']['spec']['containers'][0]['name']} exited with {code}"
            await self._status(name, _failed("PodFailurePolicy", message, failed=run.failed))
        elif run.failed > limit:
            run.done = True
            await self._status(
                name, _failed("BackoffLimitExceeded", "Job has reached the specified backoff limit", failed=run.failed)
            )
        else:
            await self._status(name, {"active": 0, "ready": 0, "failed": run.failed})

    async def _kill(self, pod: Pod) -> None:
        if pod.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pod.process.pid, 15)
            try:
                await asyncio.wait_for(pod.process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pod.process.pid, 9)
                await pod.process.wait()
        await self._cleanup(pod)

    async def _cleanup(self, pod: Pod) -> None:
        if pod.container:
            await asyncio.to_thread(subprocess.run, ["buildah", "rm", pod.container], capture_output=True, check=False)
            pod.container = None

    async def _status(self, name: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiException):  # the Job was deleted meanwhile
            await patch_job_status(self.api, self.namespace, name, {"status": status})


def _now() -> str:
    return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def _failed(reason: str, message: str, *, failed: int = 1) -> dict[str, Any]:
    now = _now()
    conditions = [cond("FailureTarget", reason, message, now), cond("Failed", reason, message, now)]
    return {"active": 0, "ready": 0, "failed": failed, "conditions": conditions}


def _identity(pod: dict[str, Any], container: dict[str, Any]) -> tuple[int | None, int | None, list[int]]:
    """(uid, gid, supplementary groups) of the process; the kubelet's ``runAsNonRoot`` check."""
    merged = {**pod, **container}  # the container's settings win
    uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
    groups = [g for g in (gid, pod.get("fsGroup")) if g is not None]
    if merged.get("runAsNonRoot"):
        effective = os.geteuid() if uid is None else uid
        if effective == 0:
            raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    if merged.get("privileged"):
        raise ContainerConfigError("privileged containers are not emulated (and kubescribe needs none)")
    return uid, gid, list(dict.fromkeys(groups))


def _rewrite(value: str, mounts: dict[str, Path]) -> str:
    """A path under a mount, as the local process sees the mount's directory."""
    for path in sorted(mounts, key=len, reverse=True):
        if value == path or value.startswith(path.rstrip("/") + "/"):
            return str(mounts[path]) + value[len(path.rstrip("/")) :]
    return value


def _policy_action(job: dict[str, Any], code: int | None) -> str:
    """The ``podFailurePolicy`` action for an exit code (``Count`` without a matching rule)."""
    for rule in ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []:
        codes = rule.get("onExitCodes")
        if not codes:
            continue
        hit = code in codes.get("values", [])
        if hit == (codes.get("operator", "In") == "In"):
            return rule["action"]
    return "Count"
