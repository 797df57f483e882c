"""The planner's pictures: a Gantt timeline of one run (a lane per GPU, a bar per pod's tenure,
shaded by its share of the GPU) and CDFs of job completion time per arm."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from services.plan.gpus import COMPUTE_SLICES, profile_of
from services.plan.sim import Result


def gantt(result: Result, path: Path, title: str) -> Path:
    """Each GPU is a lane 7 compute slices high; a pod occupies the slices of its profile."""
    types = {g.name: g.gpu_type for g in result.gpus}
    lanes = {g.name: index for index, g in enumerate(result.gpus)}
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(lanes) + 1.5))
    cmap = plt.get_cmap("tab20")
    models = sorted({j.model for j in result.jobs})
    for gpu in result.gpus:  # stack a GPU's concurrent pods in slice rows
        spans = sorted((frm, to, res, j.model) for j in result.jobs for g, res, frm, to in j.runs if g == gpu.name)
        rows: list[float] = [0.0] * COMPUTE_SLICES
        for frm, to, res, model in spans:
            size = profile_of(types[gpu.name], res).compute
            start = next((i for i in range(COMPUTE_SLICES - size + 1) if max(rows[i : i + size]) <= frm), 0)
            rows[start : start + size] = [to] * size
            y = lanes[gpu.name] + start / COMPUTE_SLICES
            ax.broken_barh([(frm, to - frm)], (y, size / COMPUTE_SLICES * 0.95), color=cmap(models.index(model)))
    ax.set_yticks([i + 0.5 for i in lanes.values()], list(lanes))
    ax.set_xlabel("simulated time (s)")
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(models))]
    ax.legend(handles, models, loc="upper right", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cdf(jcts: dict[str, list[float]], path: Path, title: str) -> Path:
    """Empirical CDF of job completion time, one line per arm (all rounds pooled)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, values in jcts.items():
        data = np.sort(np.asarray(values))
        ax.step(data, np.arange(1, data.size + 1) / data.size, where="post", label=label)
    ax.set_xlabel("job completion time (s)")
    ax.set_ylabel("fraction of recordings")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
