"""Run one service under cProfile on a CPU-time clock and write its stats when it exits.

    python bench/cprofile_child.py OUT.prof services.runtime.serve summarizer   # a module
    python bench/cprofile_child.py OUT.prof bench/controlplane.py --role dispatcher   # a script

Used by ``bench/controlplane_cpu.py``. A CPU clock (``time.process_time``), not wall time, because
on a saturated 2-core box a wall-clock sampler charges a function for the time its process waits
for a core (py-spy put 28 % of the dispatcher in ``send`` that way). SIGTERM exits through
``sys.exit`` where the service installs no handler of its own, so the stats are written either way.
"""

from __future__ import annotations

import atexit
import cProfile
import runpy
import signal
import sys
import time


def main() -> None:
    out, target = sys.argv[1], sys.argv[2]
    sys.argv = [target, *sys.argv[3:]]
    profile = cProfile.Profile(time.process_time)

    def write() -> None:
        profile.disable()
        profile.dump_stats(out)

    atexit.register(write)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profile.enable()
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
