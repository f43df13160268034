"""OUT/report.md (the same story as the HTML report, as text) and OUT/trials.csv (every trial, one row each)."""

from __future__ import annotations

import csv
import io
import json

from .data import RunData
from .findings import compute_findings, failure_findings
from .summary import TABLE_COLUMNS, summary_rows, table_rows


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(run: RunData) -> str:
    res = run.result or {}
    metric_name = (res.get("baseline") or {}).get("metric_name") or "metric"
    lines = [f"# cvtune optimize: {run.facts.get('model_name', '')}", "", "| | |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in summary_rows(run)]
    front = set(res.get("front") or [])
    full = [r for r in run.trials if r["rung"] == "full" and r["key"] in front]
    if full:
        field = run.objective.field
        lines += ["", "## Pareto front (re-measured on the whole evaluation split)", "",
                  f"| candidate | {field} | {metric_name} |", "|---|---:|---:|"]
        lines += [f"| {_md(r['label'])} | {r[field]:.6g} | {r['metric']:.4f} |"
                  for r in sorted(full, key=lambda r: run.objective.sort_key(r[field]))]
    findings = compute_findings([r for r in run.trials if r["rung"] == "screen"], facts=run.facts,
                                metric_name=metric_name)
    lines += ["", "## Findings on this machine", ""] + [f"- {_md(f.text)}" for f in findings]
    if not findings:
        lines.append("- no pair of candidates differing in a single setting was measured")
    failures = failure_findings(run.best_rows())
    lines += ["", "## What could not run", ""] + ([f"- {_md(t)}" for t in failures] or ["- none"])
    lines += ["", f"All {len(run.trials)} trials: trials.csv and report.html.", ""]
    return "\n".join(lines)


def render_csv(run: RunData) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["key", *TABLE_COLUMNS, "candidate"])
    raw = {(r["key"], r["rung"]): r for r in run.trials}
    for row in table_rows(run):
        cand = raw[(row["key"], row["rung"])]["candidate"]
        writer.writerow([row["key"], *("" if row.get(c) is None else row.get(c) for c in TABLE_COLUMNS),
                         json.dumps(cand, sort_keys=True)])
    return buffer.getvalue()
