"""OUT/report.md (the same story as the HTML report, as text) and OUT/trials.csv (every trial, one row each)."""

from __future__ import annotations

import csv
import io
import json

from .data import RunData
from .findings import compute_findings, failure_findings
from .summary import TABLE_COLUMNS, summary_rows, table_row

_MD_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "[": "\\[", "]": "\\]",
                             "`": "\\`", "\\": "\\\\", "\n": " ", "\r": " "})


def _md(text: str) -> str:
    """Text from the run (model and file names) made inert in Markdown: no HTML (viewers render <script>, <img
    onerror>), no links or code spans, no table breaks."""
    return str(text).translate(_MD_ESCAPES)


def render_markdown(run: RunData) -> str:
    metric_name = run.metric_name
    lines = [f"# cvtune optimize: {_md(run.facts.get('model_name', ''))}", "", "| | |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in summary_rows(run)]
    front = run.front_keys
    full = [t for t in run.trials if t.rung == "full" and t.key in front and t.measured]
    if full:
        objective = run.objective
        lines += ["", "## Pareto front (re-measured on the whole evaluation split)", "",
                  f"| candidate | {objective.field} | {metric_name} |", "|---|---:|---:|"]
        lines += [f"| {_md(t.label)} | {objective.value(t):.6g} | {t.metric.value:.4f} |"  # type: ignore[union-attr]
                  for t in sorted(full, key=lambda t: objective.sort_key(objective.value(t)))]
    findings = compute_findings([t for t in run.trials if t.rung == "screen"], facts=run.facts,
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
    for trial in run.trials:
        row = table_row(run, trial)
        writer.writerow([trial.key, *("" if row.get(c) is None else row.get(c) for c in TABLE_COLUMNS),
                         json.dumps(trial.candidate.to_dict(), sort_keys=True)])
    return buffer.getvalue()
