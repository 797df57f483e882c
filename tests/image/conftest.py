"""The CPU image, built once per session with buildah, and a way to run its commands.

Commands run with ``buildah run --isolation chroot`` on the host network, as UID 10001, with
the image's entrypoint (tini) in front and a **read-only root**: ``buildah run`` has no
``--read-only``, so the container's overlay mount is remounted read-only before each run and
only ``/tmp`` (a host directory bind-mounted, like the chart's emptyDir) is writable. buildah
1.28 cannot tidy up after a command in a read-only root (it panics while logging a cleanup
error and exits 2), so the command's own exit code is written to ``/tmp/.exit-code`` by a
``sh`` wrapper and read from there.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

UID = 10001
WRAPPER = 'cd /tmp; "$@"; echo $? > /tmp/.exit-code'


@dataclass
class Run:
    """One command started in the image."""

    process: subprocess.Popen[bytes]
    tmp: Path
    log: Path

    def exit_code(self, timeout: float) -> int:
        """The command's own exit code (see the module docstring), after buildah has returned."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        if self.process.poll() is None:
            self.kill()
            pytest.fail(f"command still running after {timeout}s:\n{self.output()}")
        code = self.tmp / ".exit-code"
        assert code.exists(), f"the command did not finish normally:\n{self.output()}"
        return int(code.read_text())

    def terminate(self) -> None:
        """SIGTERM to tini, as the kubelet does: tini forwards it to the service."""
        tini = [p for p in psutil.Process(self.process.pid).children(recursive=True) if p.name() == "tini"]
        assert tini, f"tini is not running in the container:\n{self.output()}"
        for process in tini:
            process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                child.kill()
            self.process.kill()
        self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class Container:
    """A working container of the image whose root is read-only while commands run."""

    def __init__(self, name: str, entrypoint: list[str]) -> None:
        self.name = name
        self.entrypoint = entrypoint
        self.root = Path(_buildah("mount", name))
        # Mount targets buildah creates for each run must exist before the root turns read-only.
        for path in ("run/.containerenv", "etc/hosts", "etc/resolv.conf", "etc/hostname"):
            (self.root / path).touch()
        subprocess.run(["mount", "-o", "remount,ro", str(self.root)], check=True)

    def start(self, args: list[str], env: dict[str, str], tmp: Path, *, volumes: dict[str, Path] | None = None) -> Run:
        """Start ``entrypoint + args`` as UID 10001; ``tmp`` becomes the container's /tmp."""
        for directory in (tmp, *(volumes or {}).values()):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o1777)
        command = ["buildah", "run", "--isolation", "chroot", "--user", f"{UID}:{UID}", "-v", f"{tmp}:/tmp"]
        for target, source in (volumes or {}).items():
            command += ["-v", f"{source}:{target}"]
        for name, value in env.items():
            command += ["--env", f"{name}={value}"]
        command += [self.name, "--", "sh", "-c", WRAPPER, "sh", *self.entrypoint, *args]
        log = tmp.parent / f"{tmp.name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        return Run(process, tmp, log)

    def remove(self) -> None:
        subprocess.run(["mount", "-o", "remount,rw", str(self.root)], check=False)
        _buildah("umount", self.name)
        _buildah("rm", self.name)


def _buildah(*args: str) -> str:
    return subprocess.run(["buildah", *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def container(image: str) -> Iterator[Container]:
    config = json.loads(_buildah("inspect", "--type", "image", image))
    entrypoint = config["OCIv1"]["config"]["Entrypoint"]
    box = Container(_buildah("from", "--pull-never", image), entrypoint)
    try:
        yield box
    finally:
        box.remove()
