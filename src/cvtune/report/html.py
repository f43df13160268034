"""OUT/report.html: one self-contained file (inline CSS, SVG and a few lines of JavaScript; opens offline).
Every string that comes from the model, the data or the trials is escaped."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .data import RunData
from .findings import compute_findings, failure_findings
from .plots import points_from, scatter_svg
from .summary import TABLE_COLUMNS, summary_rows, table_rows

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#f0f0f0;cursor:pointer;user-select:none}th.sorted-asc::after{content:" \\25B2"}
th.sorted-desc::after{content:" \\25BC"}tr.failed td,tr.ruled_out td{color:#888}tr.best td{background:#e8f5e9}
td.num{text-align:right;font-variant-numeric:tabular-nums}.verdict-ok{color:#2ca02c}.verdict-bad{color:#d62728}
.summary td:first-child{font-weight:600;white-space:nowrap}
"""

JS = """
(function(){
  function cellValue(td){var v=td.getAttribute('data-v');if(v===null){return td.textContent;}
    var n=parseFloat(v);return isNaN(n)?v:n;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.querySelectorAll('th');
    heads.forEach(function(th,col){th.addEventListener('click',function(){
      var asc=!th.classList.contains('sorted-asc');
      heads.forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=cellValue(a.cells[col]),y=cellValue(b.cells[col]);
        if(x===y){return 0;} if(x===''||x===null){return 1;} if(y===''||y===null){return -1;}
        return (x<y?-1:1)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});
    });});
  });
  document.body.setAttribute('data-ready','1');
})();
"""


def _cell(column: str, value: Any, budget) -> str:
    if value is None:
        return '<td data-v=""></td>'
    if column == "drop":
        return f'<td class="num" data-v="{value:.6g}">{escape(budget.describe(value))}</td>'
    if isinstance(value, float):
        text = f"{value:.4f}" if column == "metric" else f"{value:.2f}"
        return f'<td class="num" data-v="{value:.6g}">{text}</td>'
    if isinstance(value, int):
        return f'<td class="num" data-v="{value}">{value:,}</td>'
    return f"<td>{escape(str(value))}</td>"


def render_html(run: RunData) -> str:
    res = run.result or {}
    objective = run.objective
    budget = run.budget
    base, best = run.baseline, run.best
    base_key, best_key = (base.key if base else None), (best.key if best else None)
    metric_name = run.metric_name
    rows = run.best_rows()
    # y: the metric change against the baseline measured on the same images (screened and re-measured
    # candidates saw different image sets, so raw metrics would not be comparable on one axis)
    scale = 100.0 if budget.relative else 1.0

    def change(trial) -> float | None:
        drop = run.drop(trial)
        return None if drop is None else -drop * scale

    points = points_from(rows, objective=objective, front_keys=run.front_keys, baseline_key=base_key,
                         best_key=best_key, y=change)
    y_label = f"{metric_name} change vs baseline" + (" (%)" if budget.relative else "")
    chart = scatter_svg(points, x_label=f"{objective.field} ({objective.unit})", y_label=y_label,
                        budget_y=-budget.value * scale)
    screen_rows = [t for t in run.trials if t.rung == "screen"]
    findings = compute_findings(screen_rows, facts=run.facts, metric_name=metric_name)
    failures = failure_findings(rows)
    verdict = ""
    if best:
        ok = res.get("met_budget")
        verdict = (f'<p class="{"verdict-ok" if ok else "verdict-bad"}"><b>'
                   + (f"{res['gain']:.2f}x {escape(objective.gain_label)} over the baseline" if res.get("gain")
                      else "chosen")
                   + (f" at {escape(budget.describe(res.get('drop') or 0.0))} {escape(metric_name)} drop"
                      if res.get("drop") is not None else "")
                   + (" (within budget)" if ok else " (no candidate met the budget: closest shown)") + "</b></p>")
    summary = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in summary_rows(run))
    table = table_rows(run)
    head = "".join(f"<th>{escape(c)}</th>" for c in TABLE_COLUMNS)
    body = []
    for r in table:
        cls = r["status"] + (" best" if r["key"] == best_key else "")
        body.append(f'<tr class="{escape(cls)}" data-key="{escape(r["key"])}">'
                    + "".join(_cell(c, r.get(c), budget) for c in TABLE_COLUMNS) + "</tr>")
    finding_items = "".join(f"<li>{escape(f.text)}</li>" for f in findings) or \
        "<li>No pair of candidates differing in a single setting was measured.</li>"
    failure_items = "".join(f"<li>{escape(t)}</li>" for t in failures) or "<li>none</li>"
    title = f"cvtune optimize: {run.facts.get('model_name') or run.config.get('model', '')}"
    # inside <script>, '<!--', '<script' or '</script' in a name (a folder called r<!--<script>) would end or
    # swallow the block: every <, >, & as a JSON \u escape is the same data and inert markup
    data_json = (json.dumps(res, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
                 .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
{verdict}
<h2>Summary</h2>
<table class="summary"><tbody>{summary}</tbody></table>
<h2>Speed and accuracy</h2>
<p>Each point is one candidate: {escape(objective.field)} against its {escape(metric_name)} change from the
baseline on the same images (re-measured candidates: the whole evaluation split; screened ones: a subset). The
orange line is the Pareto front; hover a point for details.</p>
<div id="chart">{chart}</div>
<h2>Findings on this machine</h2>
<ul id="findings">{finding_items}</ul>
<h2>What could not run</h2>
<ul id="failures">{failure_items}</ul>
<h2>All trials</h2>
<p>Click a column to sort. Drops are against the baseline measured at the same rung.</p>
<table id="trials" class="sortable"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<script type="application/json" id="result-data">{data_json}</script>
<script>{JS}</script>
</body></html>
"""
