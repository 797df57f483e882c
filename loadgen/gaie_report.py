"""The GAIE experiment's report: TTFT p99 by concurrency per arm (PNG) and a results table (Markdown).

Numbers come only from ``summary.json`` (written by :mod:`loadgen.gaie`), so the page cannot say
anything the raw records do not back; the hand-written README in docs/results/gaie links to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_p99(summary: dict[str, Any], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for arm, levels in summary["ttft"].items():
        xs = [int(lv) for lv in levels]
        means = [levels[lv]["ttft_p99_s"]["mean"] for lv in levels]
        low = [m - levels[lv]["ttft_p99_s"]["low"] for lv, m in zip(levels, means, strict=True)]
        high = [levels[lv]["ttft_p99_s"]["high"] - m for lv, m in zip(levels, means, strict=True)]
        ax.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3, label=arm)
    ax.set_xlabel("concurrency (streams)")
    ax.set_ylabel("TTFT p99 (model s), mean of rounds, 95% CI")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cell(value: dict[str, Any], percent: bool = False) -> str:
    if percent:
        return f"{value['mean']:+.0%} [{value['low']:+.0%}, {value['high']:+.0%}]"
    return f"{value['mean']:.2f} [{value['low']:.2f}, {value['high']:.2f}]"


def results_table(summary: dict[str, Any]) -> str:
    """Markdown: TTFT p50 and p99 per arm and level, and the p99 change against random."""
    levels = sorted({int(lv) for arm in summary["ttft"].values() for lv in arm})
    lines = ["| arm | metric | " + " | ".join(f"c={lv}" for lv in levels) + " |"]
    lines.append("|---|---|" + "---|" * len(levels))
    for arm, cells in summary["ttft"].items():
        for metric in ("ttft_p50_s", "ttft_p99_s"):
            row = [_cell(cells[str(lv)][metric]) if str(lv) in cells else "" for lv in levels]
            lines.append(f"| {arm} | {metric[:-2]} (s) | " + " | ".join(row) + " |")
    for arm, change in summary["p99_change_vs_random"].items():
        row = [_cell(change[str(lv)], percent=True) if str(lv) in change else "" for lv in levels]
        lines.append(f"| {arm} | p99 vs random | " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_report(out_dir: Path, summary: dict[str, Any], env: dict[str, Any]) -> dict[str, Path]:
    options = env["options"]
    title = (
        f"{options['replicas']} sim replicas ({options['calibration']}) behind Envoy; "
        f"{options['rounds']} rounds, {round(options['requests'] * options['scale'])} req/level"
    )
    png = plot_p99(summary, out_dir / "ttft_p99.png", title)
    verdicts = [
        f"- **{arm}** vs random, largest p99 cut at c={c['largest_cut']['concurrency']}: "
        f"{_cell(c['largest_cut'], percent=True)} → {c['verdict']} (paper: up to -90 %)"
        for arm, c in summary["p99_change_vs_random"].items()
        if "largest_cut" in c
    ]
    text = "\n".join(
        [
            f"# GAIE run: {title}",
            "",
            f"Commit `{env['commit'][:12]}`, {env['cores']} cores, load average {env['load_average_at_start'][0]:.1f} "
            f"at start, {env['duration_s']:.0f} s. Client: {options['client']}. Model seconds "
            f"(time scale {options['time_scale']}). Means over rounds with 95 % bootstrap intervals.",
            "",
            results_table(summary),
            "",
            *verdicts,
            "",
        ]
    )
    md = out_dir / "results.md"
    md.write_text(text)
    return {"png": png, "markdown": md}


def sensitivity_table(base: tuple[str, dict[str, Any]], variants: list[tuple[str, dict[str, Any]]]) -> str:
    """Markdown: the picker's p99 change against random per level, for the base run and each variant."""
    rows = [base, *variants]
    levels = sorted({int(lv) for _, s in rows for lv in s["p99_change_vs_random"].get("picker", {}) if lv.isdigit()})
    lines = ["| assumption | " + " | ".join(f"c={lv}" for lv in levels) + " | verdict |"]
    lines.append("|---|" + "---|" * (len(levels) + 1))
    for label, summary in rows:
        change = summary["p99_change_vs_random"].get("picker", {})
        cells = [_cell(change[str(lv)], percent=True) if str(lv) in change else "" for lv in levels]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {change.get('verdict', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m loadgen.gaie_report RESULTS_DIR``: write sensitivity.md from RESULTS_DIR/sensitivity/*/."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--base", default="a100-40gb", help="subdirectory of the main run")
    args = parser.parse_args(argv)

    def load(directory: Path) -> dict[str, Any]:
        return json.loads((directory / "summary.json").read_text())

    base = (f"calibration as committed ({args.base})", load(args.results / args.base))
    variants = [
        (d.name, load(d)) for d in sorted((args.results / "sensitivity").glob("*")) if (d / "summary.json").exists()
    ]
    text = "# Sensitivity: picker vs random, TTFT p99 change (mean of rounds, 95 % bootstrap interval)\n\n"
    text += sensitivity_table(base, variants) + "\n"
    (args.results / "sensitivity.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
