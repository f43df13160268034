"""OUT/report.md (the same story as the HTML report, as text: same sections, same sign convention) and
OUT/trials.csv (every trial, one row each, machine-readable columns)."""

from __future__ import annotations

import csv
import io
import json

from . import units
from .data import RunData
from .findings import compute_findings, failure_findings
from .sections import deploy_snippet, profiles, sensitivities, technique_grid, timeline
from .summary import TABLE_COLUMNS, summary_rows, table_rows

_MD_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "[": "\\[", "]": "\\]",
                             "`": "\\`", "\\": "\\\\", "\n": " ", "\r": " "})


def _md(text: object) -> str:
    """Text from the run (model and file names) made inert in Markdown: no HTML (viewers render <script>, <img
    onerror>), no links or code spans, no table breaks."""
    return str(text).translate(_MD_ESCAPES)


def render_markdown(run: RunData) -> str:
    metric_name = run.metric_name
    budget, objective = run.budget, run.objective
    lines = [f"# cvtune optimize: {_md(run.facts.get('model_name', ''))}", "", "| | |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in summary_rows(run)]
    front = run.front_keys
    full = [t for t in run.best_rows() if t.key in front and t.measured]
    if full:
        lines += ["", "## Pareto front (re-measured on the whole evaluation split)", "",
                  f"| candidate | {objective.name} | {metric_name} | change vs baseline (positive = better) |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {_md(t.label)} | {units.objective_value(objective.field, objective.value(t))} | "
                  f"{t.metric.value:.4f} | {units.change(run.change(t), budget)} |"  # type: ignore[union-attr]
                  for t in sorted(full, key=lambda t: objective.sort_key(objective.value(t)))]
    grid = technique_grid(run)
    lines += ["", "## Runtime x technique (median speed-up vs baseline)", ""]
    if grid is None:
        lines.append("not recorded")
    else:
        lines += ["| runtime | " + " | ".join(_md(t) for t in grid.techniques) + " |",
                  "|---|" + "---:|" * len(grid.techniques)]
        for rt in grid.runtimes:
            cells = [f"{c[0]:.2f}x ({c[2]})" if (c := grid.cells.get((rt, t))) else "-" for t in grid.techniques]
            lines.append(f"| {_md(rt)} | " + " | ".join(cells) + " |")
    lines += ["", "## Where the time goes", ""]
    found = profiles(run)
    if found is None:
        lines.append("not recorded")
    for prof in found or []:
        lines += [f"- **{_md(prof.title)}**: {prof.total_ms:.2f} ms per inference: "
                  + ", ".join(f"{_md(op)} {ms:.2f} ms" for op, ms in prof.top(6))]
    lines += ["", "## Search timeline (best so far)", ""]
    tl = timeline(run)
    if tl is None:
        lines.append("not recorded")
    for t, value, label, _ in (tl.steps if tl else []):
        lines.append(f"- {t:.0f} s: {_md(label)}, {units.objective_value(objective.field, value)}")
    lines += ["", "## Sensitivity", ""]
    sens = sensitivities(run)
    if not sens:
        lines.append("not computed")
    for s in sens:
        lines.append(f"- {_md(s.path.name)} ({_md(s.method)}, {_md(s.metric)} baseline {s.baseline:.4f}), most "
                     f"sensitive: " + ", ".join(f"{_md(name)} {100 * min(c for _, c in curve):+.2f}%"
                                                for name, curve in s.curves))
    findings = compute_findings(run.best_rows(), facts=run.facts,
                                metric_name=metric_name)
    lines += ["", "## Findings on this machine", ""] + [f"- {_md(f.text)}" for f in findings]
    if not findings:
        lines.append("- no pair of candidates differing in a single setting was measured")
    failures = failure_findings(run.best_rows())
    lines += ["", "## What could not run", ""] + ([f"- {_md(t)}" for t in failures] or ["- none"])
    snippet = deploy_snippet(run)
    if snippet is not None:
        lines += ["", "## Deploy", "", "```bash", snippet[0], "```", "", "```python", snippet[1], "```"]
    lines += ["", f"All {len(run.trials)} trials: trials.csv and report.html.", ""]
    return "\n".join(lines)


def render_csv(run: RunData) -> str:
    """Every trial: the table's columns (`change` = metric change vs baseline, positive = better), key, candidate."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["key", *TABLE_COLUMNS, "candidate"])
    for trial, row in zip(run.trials, table_rows(run), strict=True):
        writer.writerow([trial.key, *("" if row.get(c) is None else row.get(c) for c in TABLE_COLUMNS),
                         json.dumps(trial.candidate.to_dict(), sort_keys=True)])
    return buffer.getvalue()
