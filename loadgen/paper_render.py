"""Rendering ``kubescribe loadgen paper`` results (the ``result.json`` files): rich tables for
the terminal, ``summary.md`` for docs/results. No experiment runs here."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from services.plan.render import ci
from services.plan.render import markdown as plan_markdown
from services.plan.render import tables as plan_tables


def _ground_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, metrics in result["workloads"].items():
        for metric, stats in metrics.items():
            rows.append(
                [name, metric, ci(stats["measured"], 1), ci(stats["predicted"], 1), ci(stats["error_pct"], 1, pct=True),
                 _ground_verdict(stats["error_pct"], result["tolerance"] * 100)]
            )  # fmt: skip
    return rows


def _ground_verdict(error: dict[str, float], tolerance_pct: float) -> str:
    """Whole interval inside the tolerance, only the mean (the test's criterion), or neither."""
    if abs(error["lo"]) <= tolerance_pct and abs(error["hi"]) <= tolerance_pct:
        return f"within {tolerance_pct:.0f} %"
    if abs(error["mean"]) <= tolerance_pct:
        return f"mean within {tolerance_pct:.0f} %, interval not"
    return f"outside {tolerance_pct:.0f} %"


GROUND_HEADER = ["workload", "metric", "measured s", "predicted s", "error", "verdict"]


def _gaie_rows(result: dict[str, Any]) -> list[list[str]]:
    return [[level, ci(stats, 1, pct=True)] for level, stats in result["delta_p99"].items()]


def tables(results: dict[str, Any]) -> list[Table]:
    rendered: list[Table] = []
    for result in results.values():
        if result["kind"] == "plan":
            rendered += plan_tables(result["outcome"])
            continue
        if result["kind"] == "ground":
            table = Table(title=f"{result['title']} ({result['scale']}, {result['rounds']} rounds)")
            header, rows = GROUND_HEADER, _ground_rows(result)
        else:
            table = Table(title=f"{result['title']} ({result['rounds']} rounds; not a reproduction)")
            header, rows = ["concurrency", "Δ p99 TTFT least-loaded vs random"], _gaie_rows(result)
        for column in header:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        rendered.append(table)
    return rendered


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def headline(results: dict[str, Any]) -> list[list[str]]:
    """One row per paper comparison: what, scale, the paper's figure, ours, the verdict."""
    rows = []
    for result in results.values():
        if result["kind"] != "plan":
            continue
        outcome = result["outcome"]
        metric = outcome["metric"]
        for c in outcome["comparisons"]:
            if c["group"] != "paper":
                continue
            rows.append(
                [f"{result['name']}: {c['arm']} vs {c['baseline']}", result["scale"], f"{c['paper_pct']:+.0f} %",
                 ci(c["delta_pct"][metric], 1, pct=True), c["verdict"], f"`{result['name']}/plan.json`"]
            )  # fmt: skip
    return rows


def markdown(results: dict[str, Any], command: str) -> str:
    first = next(iter(results.values()))
    env = first["environment"]["start"]
    lines = [
        "# kubescribe and the ICPE'26 paper",
        "",
        f"`{command}` at commit `{env['commit'][:12]}`{' (dirty tree)' if env['dirty'] else ''} on "
        f"{env['cores']} cores, load average {env['load_average'][0]:.1f} at the start. Means with 95 % bootstrap "
        "intervals over rounds; per-experiment details, raw records and the environment are in the subdirectories.",
        "",
        "## The paper's comparisons",
        "",
        *_md_table(["comparison", "scale", "paper", "ours", "verdict", "source"], headline(results)),
        "",
    ]
    for result in results.values():
        lines += [f"## {result['title']}", "", f"*{result['scale']}, {result['rounds']} rounds.*", ""]
        if result["kind"] == "plan":
            body = plan_markdown(result["outcome"], result["command"]).split("\n", 2)[2]
            lines += [body.replace("\n## ", "\n### "), ""]
        elif result["kind"] == "ground":
            lines += [*_md_table(GROUND_HEADER, _ground_rows(result)), ""]
        else:
            sim = result["sim"]
            lines += [
                f"Two isolated simulator replicas (max-num-seqs {sim['max_num_seqs']}: llm-d-inference-sim's "
                f"default, vLLM's is 256), TTFT {sim['ttft_s']} s, ITL {sim['itl_s']} s, {sim['max_tokens']} "
                "output tokens, routed by the load client. The old analogue; it tests neither prefix-cache "
                "affinity nor vLLM under load.",
                "",
                *_md_table(["concurrency", "Δ p99 TTFT least-loaded vs random"], _gaie_rows(result)),
                "",
            ]
    return "\n".join(lines) + "\n"
