"""Rendering an experiment's outcome (the dict :func:`services.plan.experiment.run` returns) as
rich tables for the terminal and Markdown for docs/results; no simulation here.

The paper's comparison and kubescribe's own arms are separate tables on purpose: the first is a
reproduction (same setup, the paper's treatment against the paper's baseline), the second is
what kubescribe changes on top of the paper's treatment.
"""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from services.plan.metrics import METRICS


def ci(stat: dict[str, float], digits: int = 0, pct: bool = False) -> str:
    if stat is None or math.isnan(stat.get("mean", math.nan)):
        return "–"
    sign = "+" if pct else ""
    unit = " %" if pct else ""
    return f"{stat['mean']:{sign}.{digits}f}{unit} [{stat['lo']:{sign}.{digits}f}, {stat['hi']:{sign}.{digits}f}]"


def _metric_digits(key: str) -> int:
    return 2 if key == "gpu_util" else 0


def arm_rows(outcome: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["arm", "group", "what it is", *METRICS.values(), "jobs", "evictions"]
    rows = []
    for name, arm in outcome["arms"].items():
        s = arm["summary"]
        rows.append(
            [
                name,
                arm["group"],
                arm["label"],
                *(ci(s[k], _metric_digits(k)) for k in METRICS),
                f"{s['jobs']['mean']:.0f}",
                f"{s['evictions']['mean']:.0f}",
            ]
        )
    return header, rows


def comparison_rows(outcome: dict[str, Any], groups: set[str]) -> tuple[list[str], list[list[str]]]:
    metric = outcome["metric"]
    other = "makespan_s" if metric != "makespan_s" else "jct_mean_s"
    header = ["comparison", f"Δ {METRICS[metric]}", f"Δ {METRICS[other]}", "paper", "verdict", "why (in the model)"]
    rows = []
    for c in outcome["comparisons"]:
        if c["group"] not in groups:
            continue
        paper = f"{c['paper_pct']:+.0f} %" if "paper_pct" in c else ""
        rows.append(
            [
                f"{c['arm']} vs {c['baseline']}",
                ci(c["delta_pct"][metric], 1, pct=True),
                ci(c["delta_pct"][other], 1, pct=True),
                paper,
                c.get("verdict", ""),
                c.get("why", ""),
            ]
        )
    return header, rows


def sweep_rows(outcome: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    arms = [c["arm"] for c in outcome["comparisons"]]
    header = ["assumption", "value", *(f"Δ {a}" for a in arms)]
    rows = []
    for key in outcome["sweep_order"]:
        for row in (r for r in outcome["sweep"] if r["key"] == key):
            rows.append([key, f"{row['value']:g}", *(ci(row["deltas"].get(a), 1, pct=True) for a in arms)])
    return header, rows


def tables(outcome: dict[str, Any]) -> list[Table]:
    n = outcome["rounds"]
    specs = [
        (f"{outcome['title']} — simulated, {n} rounds, mean [95 % bootstrap interval]", arm_rows(outcome)),
        ("The paper's comparison, reproduced in simulation", comparison_rows(outcome, {"paper", "variant"})),
        ("What kubescribe adds, against the paper's treatment (separately)", comparison_rows(outcome, {"kubescribe"})),
    ]
    if outcome["sweep"]:
        specs.append((f"Sensitivity of Δ {METRICS[outcome['metric']]} (most influential first)", sweep_rows(outcome)))
    result = []
    for title, (header, rows) in specs:
        if not rows:  # a single spec has no comparison to show
            continue
        table = Table(title=title, show_lines=False)
        for index, column in enumerate(header):
            table.add_column(column, justify="left" if index < 3 or column.startswith("why") else "right",
                             overflow="fold", max_width=60 if column.startswith("why") else None)  # fmt: skip
        for row in rows:
            table.add_row(*row)
        result.append(table)
    return result


def _md(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows),
        "",
    ]


def markdown(outcome: dict[str, Any], command: str) -> str:
    claim = outcome["claim"]
    lines = [
        f"# {outcome['title']}",
        "",
        f"Simulated at cluster scale by `{command}` ({outcome['rounds']} rounds, trace seeds "
        f"{outcome['seeds'][0]}–{outcome['seeds'][-1]}); mean [95 % bootstrap interval]; differences are "
        "paired by round. Nothing here ran on a GPU cluster.",
        "",
    ]
    if claim:
        lines += [f"The paper: {claim['text']} ({claim['delta_pct']:+.0f} % {METRICS[claim['metric']]}).", ""]
    lines += ["## Arms", "", *_md(*arm_rows(outcome))]
    lines += ["## The paper's comparison (reproduction)", "", *_md(*comparison_rows(outcome, {"paper", "variant"}))]
    lines += ["## What kubescribe adds (separately)", "", *_md(*comparison_rows(outcome, {"kubescribe"}))]
    if outcome["sweep"]:
        lines += ["## Sensitivity (most influential first)", "", *_md(*sweep_rows(outcome))]
    lines += ["## Assumptions", "", *(f"- {a}" for a in outcome["assumptions"]), ""]
    lines += ["## Calibration", "", "| key | value | source |", "|---|---|---|"]
    lines += [f"| {k} | {v['value']:.4g} {v['unit']} | {v['source']} |" for k, v in outcome["calibration"].items()]
    return "\n".join(lines) + "\n"
