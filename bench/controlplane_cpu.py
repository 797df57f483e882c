"""Where each service's CPU goes, by package: kubescribe's own code against the libraries it runs on.

``bench/controlplane.py`` says how much CPU a recording costs each service; this says whose code
spends it. Each service of the same pipeline runs under cProfile on a CPU-time clock
(``bench/cprofile_child.py``), once with one recording (start-up and idle work) and once with
``--recordings``; the first is subtracted from the second function by function, so what is left
is the per-recording work. Built-in functions (``len``, ``socket.send``, ...) are charged to the
package that called them. The table gives shares, not times: cProfile costs about a microsecond
per call, which inflates call-heavy code (the event loop, protocol parsers) against code that does
much per call, so read a share as "roughly", and take the milliseconds from ``controlplane.py``.
cProfile sees only the main thread: the span exporter's thread and the thread pool are left out.

    python bench/controlplane_cpu.py                       # 400 recordings, one round (~1 min)
    python bench/controlplane_cpu.py --rounds 3 --json docs/results/controlplane/cpu-by-package.json
"""

from __future__ import annotations

import argparse
import collections
import json
import pstats
import statistics
import sys
import sysconfig
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.controlplane import REPO, Arm, run_once  # noqa: E402
from loadgen.audio import synthesize_speech  # noqa: E402

console = Console()
SERVICES = ("ingest-0", "dispatcher-0", "summarizer-0")
OWN = "kubescribe (services/, the bench's stand-ins)"
PACKAGES = {
    "nats": "nats-py",
    "faststream": "faststream + fast_depends",
    "fast_depends": "faststream + fast_depends",
    "opentelemetry": "opentelemetry",
    "httpx": "httpx + httpcore + h11 + httpx-sse",
    "httpcore": "httpx + httpcore + h11 + httpx-sse",
    "h11": "httpx + httpcore + h11 + httpx-sse",
    "httpx_sse": "httpx + httpcore + h11 + httpx-sse",
    "fastapi": "fastapi + starlette + uvicorn + multipart",
    "starlette": "fastapi + starlette + uvicorn + multipart",
    "uvicorn": "fastapi + starlette + uvicorn + multipart",
    "multipart": "fastapi + starlette + uvicorn + multipart",
    "python_multipart": "fastapi + starlette + uvicorn + multipart",
    "httptools": "fastapi + starlette + uvicorn + multipart",
    "anyio": "anyio",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
}
STDLIB = sysconfig.get_paths()["stdlib"]


def package_of(path: str) -> str:
    """The group a function's file belongs to; "" for a built-in (charged to its callers)."""
    if path == "~":
        return ""
    if path.startswith(str(REPO / "services")) or path.startswith(str(BENCH)):
        return OWN
    if "site-packages/" in path:
        top = path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return PACKAGES.get(top, "other libraries")
    if "/asyncio/" in path:
        return "asyncio (the event loop)"
    if path.startswith(STDLIB) or path.startswith("<frozen"):
        return "standard library (json, ssl, socket, ...)"
    return "other libraries"


def self_time_by_function(path: Path) -> dict[tuple, tuple[float, dict]]:
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    return {key: (value[2], value[4]) for key, value in stats.items()}


def shares(run: Path, startup: Path) -> dict[str, float]:
    """Each group's share of the self time ``run`` spent beyond ``startup``, built-ins charged to their callers."""
    busy, idle = self_time_by_function(run), self_time_by_function(startup)
    groups: collections.Counter[str] = collections.Counter()
    for key, (self_s, callers) in busy.items():
        extra = self_s - idle.get(key, (0.0, {}))[0]
        if extra <= 0:
            continue
        group = package_of(key[0])
        if group:
            groups[group] += extra
            continue
        by_caller = {caller: timing[2] for caller, timing in callers.items()}  # the caller's share of it
        total = sum(by_caller.values())
        for caller, spent in by_caller.items():
            groups[package_of(caller[0]) or "built-ins called by built-ins"] += extra * (spent / total if total else 0)
    whole = sum(groups.values())
    return {group: spent / whole for group, spent in groups.items()} if whole else {}


def profiled(directory: Path):
    """A ``run_once`` command hook: every service under ``cprofile_child.py``, stats into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)

    def command(name: str, argv: list[str]) -> list[str]:
        child = [argv[0], str(BENCH / "cprofile_child.py"), str(directory / f"{name}.prof")]
        if argv[1] == "-m":
            return [*child, *argv[2:]]
        return [*child, *argv[1:]]

    return command


def print_report(by_round: list[dict[str, dict[str, float]]], recordings: int) -> None:
    table = Table(title=f"share of each service's CPU per recording, by package ({recordings} recordings)")
    table.add_column("package")
    for service in SERVICES:
        table.add_column(service.removesuffix("-0"), justify="right")
    groups = sorted(
        {g for r in by_round for s in r.values() for g in s},
        key=lambda g: -sum(r[s].get(g, 0) for r in by_round for s in SERVICES),
    )
    for group in groups:
        cells = [f"{statistics.mean(r[s].get(group, 0.0) for r in by_round) * 100:.1f} %" for s in SERVICES]
        table.add_row(f"[bold]{group}[/]" if group == OWN else group, *cells)
    console.print(table)
    console.print("cProfile on a CPU clock, start-up subtracted; shares, not times (see the docstring).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the shares of every round here")
    args = parser.parse_args(argv)
    arm = Arm(replicas=1, summary_tokens=8)
    by_round: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="kubescribe-cpu-") as tmp:
        workdir = Path(tmp)
        audio = workdir / "one-second.wav"
        synthesize_speech("Hello control plane.", audio)
        with Progress(console=console, transient=True) as progress:
            for round_ in range(args.rounds):
                startup, busy = workdir / f"{round_}-startup", workdir / f"{round_}-busy"
                run_once(arm, 1, audio, workdir, progress, command=profiled(startup))
                run_once(arm, args.recordings, audio, workdir, progress, command=profiled(busy))
                by_round.append({s: shares(busy / f"{s}.prof", startup / f"{s}.prof") for s in SERVICES})
    print_report(by_round, args.recordings)
    if args.json:
        args.json.write_text(json.dumps({"recordings": args.recordings, "rounds": by_round}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
