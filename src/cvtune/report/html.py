"""OUT/report.html: one self-contained file (inline CSS, SVG and a few lines of JavaScript; opens offline) that a
reviewer reads in two minutes, on a laptop or a phone (no sideways scrolling: long text wraps, the trial table
turns into cards on narrow screens). Every string that comes from the model, the data or the trials is escaped."""

from __future__ import annotations

import json
from dataclasses import replace
from html import escape
from typing import Any

from . import units
from .data import RunData
from .findings import compute_findings, failure_findings
from .plots import Series, line_svg, scatter_svg
from .sections import (
    chart_points,
    deploy_snippet,
    profiles,
    sensitivities,
    stage,
    technique_grid,
    timeline,
    timeline_series,
)
from .summary import summary_rows, table_rows

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;padding:12px 20px 40px;
  max-width:1400px;color:#222;line-height:1.45;overflow-wrap:break-word}
h1{font-size:1.45em;margin:.4em 0}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1em 0 .4em}
nav{font-size:14px;display:flex;flex-wrap:wrap;gap:4px 14px}nav a{color:#1f5fa8}
p.caption{color:#444;font-size:14px;max-width:75em}
table{border-collapse:collapse;font-size:13px;width:100%}
td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
table.sortable th{cursor:pointer;user-select:none}th.sorted-asc::after{content:" \\25B2"}
th.sorted-desc::after{content:" \\25BC"}
tr.failed td,tr.ruled_out td{color:#777}tr.best td{background:#e8f5e9}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td .sub{display:block;color:#666;font-size:11px}
td.error{min-width:12em;overflow-wrap:anywhere}td.label{min-width:9em}
table.kv td{overflow-wrap:anywhere}
.verdict{font-size:1.1em}.verdict-ok{color:#1b7a1b}.verdict-bad{color:#c62828}
table.kv td:first-child{font-weight:600;width:14em}
.chart{width:100%;height:auto;display:block}
.key{columns:2 24em;font-size:13px;padding-left:0;list-style:none}
.key li{break-inside:avoid;margin-bottom:2px}
.key b{display:inline-block;min-width:2.4em}
table.grid td.cell{text-align:center;font-variant-numeric:tabular-nums}
.profiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr));gap:8px 28px}
.bar-row{display:grid;grid-template-columns:minmax(5em,11em) 1fr minmax(7em,auto);gap:8px;align-items:center;
  font-size:13px;margin:2px 0}
.bar{background:#eef2f7;height:12px;border-radius:2px}.bar span{display:block;height:100%;background:#4a7fc1;
  border-radius:2px}
.val{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.missing{color:#666;font-style:italic}
pre{background:#f6f8fa;border:1px solid #ddd;padding:10px;white-space:pre-wrap;overflow-wrap:anywhere;
  font-size:13px;margin:4px 0}
.snippet{position:relative}.snippet button{position:absolute;top:4px;right:4px;font-size:12px}
@media (max-width:760px){
  body{padding:8px 10px 30px}
  table.cards thead{display:none}
  table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
  table.cards tr{border:1px solid #ccc;margin:0 0 10px;border-radius:4px}
  table.cards td{border:none;border-bottom:1px solid #eee;text-align:left;white-space:normal;min-width:0}
  table.cards td::before{content:attr(data-label);font-weight:600;display:inline-block;min-width:10em;
    padding-right:.5em;color:#444}
  table.cards td:empty{display:none}
  table.kv td{display:block;width:auto;border:none}table.kv tr{display:block;border-bottom:1px solid #ddd}
  .chart-box{overflow-x:auto}.chart-box .chart{min-width:620px}
}
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
  document.querySelectorAll('.snippet button').forEach(function(b){b.addEventListener('click',function(){
    var text=b.parentNode.querySelector('pre').textContent;
    if(navigator.clipboard){navigator.clipboard.writeText(text).then(function(){b.textContent='copied';});}
    else{var r=document.createRange();r.selectNodeContents(b.parentNode.querySelector('pre'));
      var s=window.getSelection();s.removeAllRanges();s.addRange(r);}
  });});
  document.body.setAttribute('data-ready','1');
})();
"""

SECTIONS = (("summary", "Summary"), ("chart", "Speed and accuracy"), ("grid", "Runtime x technique"),
            ("profile", "Where the time goes"), ("order", "Search order"), ("timeline", "Search timeline"),
            ("sensitivity", "Sensitivity"),
            ("findings", "Findings"), ("failures", "What could not run"), ("deploy", "Deploy"),
            ("trials", "All trials"))


def _missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'


def _num(value: float | None, text: str, sub: str = "") -> tuple[str, str]:
    """(data-v, cell HTML) for a number shown as `text` with an optional second line."""
    if value is None:
        return "", ""
    return f"{value:.6g}", escape(text) + (f'<span class="sub">{escape(sub)}</span>' if sub else "")


def _trial_cells(r: dict[str, Any], run: RunData) -> list[tuple[str, str, str, str]]:
    """(label, css class, data-v, html) per column of the trials table."""
    budget = run.budget
    spread = f"p10-p90 {r['p10_ms']:.2f}-{r['p90_ms']:.2f}" if r["p10_ms"] is not None and r["p90_ms"] is not None \
        else (f"p90 {r['p90_ms']:.2f}" if r["p90_ms"] is not None else "")
    ci = f"CI {r['metric_ci_low']:.4f}-{r['metric_ci_high']:.4f}" \
        if r["metric_ci_low"] is not None and r["metric_ci_high"] is not None else ""
    metric_sub = " ".join(x for x in (ci, f"{r['n_images']} images" if r["n_images"] else "") if x)
    why = r["expected_gain"]
    cells = [
        ("#", "num", str(r["number"] or ""), str(r["number"] or "")),
        ("candidate", "label", "", escape(r["label"])),
        ("stage", "", "", escape(r["stage"])),
        ("status", "", "", escape(r["status"])),
        ("p50 ms", "num", *_num(r["p50_ms"], f"{r['p50_ms']:.2f}" if r["p50_ms"] is not None else "", spread)),
        ("img/s", "num", *_num(r["throughput_ips"], f"{r['throughput_ips']:.1f}" if r["throughput_ips"] else "")),
        ("memory", "num", *_num(r["peak_rss_mb"], f"{r['peak_rss_mb']:.0f} MB" if r["peak_rss_mb"] else "")),
        ("load", "num", *_num(r["load_ms"], units.ms(r["load_ms"]) if r["load_ms"] else "")),
        ("size", "num", *_num(r["size_bytes"], units.megabytes(r["size_bytes"]))),
        ("metric", "num", *_num(r["metric"], f"{r['metric']:.4f}" if r["metric"] is not None else "", metric_sub)),
        ("change vs baseline", "num", *_num(r["change"], units.change(r["change"], budget))),
        ("expected gain", "num", *(_num(why, f"{why:.3g}x") if isinstance(why, int | float) else ("", ""))),
        ("time", "num", *_num(r["seconds"], units.seconds(r["seconds"]) if r["seconds"] else "")),
        ("error", "error", "", escape(r["error"] or "")),
    ]
    return cells


def _trials_table(run: RunData) -> str:
    rows = table_rows(run)
    best_key = run.best.key if run.best else None
    if not rows:
        return _missing("no trial was recorded")
    skip = set() if any(isinstance(r["expected_gain"], int | float) for r in rows) else {"expected gain"}
    labels = [c[0] for c in _trial_cells(rows[0], run) if c[0] not in skip]
    head = "".join(f"<th>{escape(label)}</th>" for label in labels)
    body = []
    for r in rows:
        cls = r["status"] + (" best" if r["key"] == best_key else "")
        cells = "".join(f'<td class="{css}" data-label="{escape(label)}"'
                        + (f' data-v="{escape(v)}"' if v != "" or css == "num" else "") + f">{html}</td>"
                        for label, css, v, html in _trial_cells(r, run) if label not in skip)
        body.append(f'<tr class="{escape(cls)}" data-key="{escape(r["key"])}">{cells}</tr>')
    return f'<table id="trials" class="sortable cards"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}' \
           f"</tbody></table>"


def _chart(run: RunData) -> str:
    objective, budget = run.objective, run.budget
    points = chart_points(run)
    scale = 100.0 if budget.relative else 1.0
    y_label = f"{run.metric_name} change vs baseline" + (" (%)" if budget.relative else "") + ", positive = better"
    x_unit = "MB" if objective.field == "size_bytes" else objective.unit
    x_text = {p.key: units.objective_value(objective.field, p.x) for p in points}
    if objective.field == "size_bytes":  # human units: MB on the axis
        points = [replace(p, x=p.x / 1e6) for p in points]
    svg = scatter_svg(points, x_label=f"{objective.name} ({x_unit})", y_label=y_label,
                      budget_y=-budget.value * scale, budget_text=f"accuracy budget: {budget.describe()} drop",
                      y_format=lambda v: f"{v:+.3g}" if v else "0")
    role = {"baseline": " (baseline)", "best": " (chosen)"}
    key = "".join(f"<li><b>#{p.number}</b> {escape(p.label)}: {escape(x_text[p.key])}, "
                  f"{escape(units.change(p.y / scale, budget))}{role.get(p.kind, '')}"
                  + (" (Pareto front)" if p.on_front else "") + "</li>"
                  for p in sorted(points, key=lambda p: p.number))
    timed = "their final back-to-back timing (the one the speed-up uses)" if run.baseline_final \
        else "their full-evaluation timing (no final timing was recorded)"
    spread = " Horizontal lines: the p10-p90 spread of the timed runs; vertical lines: the metric's 95% CI." \
        if objective.field == "p50_ms" else " Vertical lines: the metric's 95% CI."
    return (f'<p class="caption">Each point is one candidate, numbered in the order it was first tried: '
            f"{escape(objective.name)} against its {escape(run.metric_name)} change from the baseline on the same "
            f"images (positive = better; each candidate was evaluated until its drop was clearly inside or outside "
            f"the budget; grey: timed only, not faster than the best so far). The baseline and the chosen "
            f"candidate sit at {timed}.{spread} Orange rings: the Pareto front "
            f"(no other candidate is both better on {escape(objective.name)} and more accurate).</p>"
            f'<div id="scatter" class="chart-box">{svg}</div><ul class="key">{key}</ul>')


def _grid(run: RunData) -> str:
    grid = technique_grid(run)
    if grid is None:
        return _missing("not recorded: no successful candidate with a baseline to compare against")
    head = "<th>runtime</th>" + "".join(f"<th>{escape(t)}</th>" for t in grid.techniques)
    rows = []
    for rt in grid.runtimes:
        cells = [f'<td data-label="runtime"><b>{escape(rt)}</b></td>']
        for tech in grid.techniques:
            cell = grid.cells.get((rt, tech))
            if cell is None:
                cells.append(f'<td class="cell" data-label="{escape(tech)}">-</td>')
                continue
            ratio, change, n = cell
            shade = min(abs(ratio - 1.0), 1.0)
            color = f"rgba(44,160,44,{0.12 + 0.5 * shade:.2f})" if ratio >= 1 else \
                f"rgba(214,39,40,{0.12 + 0.5 * shade:.2f})"
            sub = f"{units.change(change, run.budget)} metric, " if change is not None else ""
            cells.append(f'<td class="cell" data-label="{escape(tech)}" style="background:{color}">'
                         f'<b>{ratio:.2f}x</b><span class="sub">{escape(sub)}{n} candidate{"s" * (n != 1)}</span>'
                         f"</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return ('<p class="caption">Median speed-up (baseline p50 / candidate p50, each against the baseline timed at '
            "the same stage) of the candidates in each cell, with their median metric change (positive = "
            "better). Green: faster than the baseline; red: slower.</p>"
            f'<table class="grid cards"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _profiles(run: RunData) -> str:
    found = profiles(run)
    if found is None:
        return _missing("not recorded: this run holds no per-op-type profile (cvtune.profiling.profile_model "
                        "measures one with the runtime's own profiler)")
    blocks = []
    for prof in found:
        top = prof.top()
        peak = max((ms for _, ms in top), default=0.0) or 1.0
        total = prof.total_ms or 1.0
        bars = "".join(f'<div class="bar-row"><span class="op">{escape(op)}</span><span class="bar">'
                       f'<span style="width:{100 * ms / peak:.1f}%"></span></span><span class="val">'
                       f"{ms:.2f} ms ({100 * ms / total:.0f}%)</span></div>" for op, ms in top)
        blocks.append(f'<div class="profile"><h3>{escape(prof.title)}: {prof.total_ms:.2f} ms per inference '
                      f"in {len(prof.ops)} op types</h3>{bars}</div>")
    return ('<p class="caption">Per-op-type latency of one inference from the runtime\'s own profiler (ONNX '
            "Runtime's profiling trace, OpenCV's Net.getPerfProfile, OpenVINO's per-node counters); op types are "
            "the runtime's own names. Profiling adds a little overhead.</p>"
            f'<div class="profiles">{"".join(blocks)}</div>')


def _order(run: RunData) -> str:
    """The candidates in the order the search tried them, why it tried each when it did, and what it found."""
    numbers = run.candidate_numbers()
    rows = sorted(run.best_rows(), key=lambda t: numbers.get(t.key, 0))
    if not any(t.extra.get("why") for t in rows):
        return _missing("not recorded: this run's optimizer did not record why it tried each candidate")
    items = []
    for t in rows:
        verdict = stage(t)
        why = t.extra.get("why") or ""
        items.append(f"<li><b>{escape(t.label)}</b>: {escape(verdict)}"
                     + (f'<span class="sub">{escape(why)}</span>' if why else "") + "</li>")
    return ('<p class="caption">The search tries the candidate with the highest expected gain over the best so far '
            "per second of cost first, and learns from each measurement (cvtune optimize --explain prints this as "
            f'it goes).</p><ol class="order">{"".join(items)}</ol>')


def _timeline(run: RunData) -> str:
    tl = timeline(run)
    if tl is None:
        return _missing("not recorded: this run's optimizer did not record how its best answer improved over time")
    objective = run.objective
    svg = line_svg(timeline_series(tl), x_label="seconds since the search started",
                   y_label=f"best {objective.name} so far ({objective.unit})", css_class="timeline", height=340,
                   x_zero=True)
    items = "".join(f"<li><b>{t:.0f} s</b> {escape(label)}: {escape(units.objective_value(objective.field, v))}"
                    + (f", {escape(run.metric_name)} {metric:.4f}" if metric is not None else "") + "</li>"
                    for t, v, label, metric in tl.steps)
    return (f'<p class="caption">The best answer within budget the search held, each time it improved.</p>'
            f'<div class="chart-box">{svg}</div>'
            f'<ul class="key">{items}</ul>')


def _sensitivity(run: RunData) -> str:
    found = sensitivities(run)
    if not found:
        return _missing("not computed: run `cvtune sensitivity MODEL --data DIR -o OUT/sensitivity.json`, then "
                        "`cvtune report OUT`")
    blocks = []
    for sens in found:
        series = [Series(name, tuple((lv, 100 * c) for lv, c in curve)) for name, curve in sens.curves]
        svg = line_svg(series, x_label="pruning level", y_label=f"{sens.metric} change (%), positive = better",
                       css_class="sensitivity", height=360, y_format=lambda v: f"{v:+.3g}" if v else "0")
        alloc = f" Allocation within its budget: {len(sens.allocation)} units pruned." if sens.allocation else ""
        blocks.append(f"<h3>{escape(sens.path.name)}: {escape(sens.method)} pruning, {escape(sens.metric)} baseline "
                      f"{sens.baseline:.4f}</h3><p class=\"caption\">The {len(sens.curves)} most sensitive units: "
                      f"{escape(sens.metric)} change when only that unit is pruned at each level.{alloc}</p>"
                      f'<div class="chart-box">{svg}</div>')
    return "".join(blocks)


def _deploy(run: RunData) -> str:
    snippet = deploy_snippet(run)
    if snippet is None:
        return _missing("nothing was exported: no candidate could be measured on the full evaluation split")
    shell, python = snippet
    return ('<p class="caption">Run the exported answer on a folder of images (resumable JSON lines), or from '
            "Python:</p>"
            f'<div class="snippet"><button type="button">copy</button><pre id="deploy-cli">{escape(shell)}</pre></div>'
            f'<div class="snippet"><button type="button">copy</button><pre id="deploy-python">{escape(python)}</pre>'
            "</div>")


def render_html(run: RunData) -> str:
    res = run.result or {}
    objective, budget = run.objective, run.budget
    best = run.best
    metric_name = run.metric_name
    findings = compute_findings(run.best_rows(), facts=run.facts,
                                metric_name=metric_name)
    failures = failure_findings(run.best_rows())
    verdict = ""
    if best and res.get("improved"):
        gain = f"{res['gain']:.2f}x {objective.gain_label} over the baseline" if res.get("gain") else "answer"
        change = run.change(best)
        verdict = (f'<p class="verdict verdict-ok"><b>{escape(gain)} at {escape(units.change(change, budget))} '
                   f"{escape(metric_name)} change (within budget, re-measured through deploy.json)</b></p>")
    elif best:
        verdict = ('<p class="verdict verdict-bad"><b>Nothing beat the model as given within the budget and the '
                   'time: the answer is the model as given</b></p>')
    summary = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>"
                      for k, v in summary_rows(run))
    finding_items = "".join(f"<li>{escape(f.text)}</li>" for f in findings) or \
        "<li>No pair of candidates differing in a single setting was measured.</li>"
    failure_items = "".join(f"<li>{escape(t)}</li>" for t in failures) or "<li>none</li>"
    title = f"cvtune optimize: {run.facts.get('model_name') or run.config.get('model', '')}"
    # inside <script>, '<!--', '<script' or '</script' in a name (a folder called r<!--<script>) would end or
    # swallow the block: every <, >, & as a JSON \u escape is the same data and inert markup
    data_json = (json.dumps(res, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
                 .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    nav = "".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name in SECTIONS)
    body = {
        "summary": f'<table class="kv"><tbody>{summary}</tbody></table>',
        "chart": _chart(run),
        "grid": _grid(run),
        "profile": _profiles(run),
        "order": _order(run),
        "timeline": _timeline(run),
        "sensitivity": _sensitivity(run),
        "findings": f'<ul id="findings-list">{finding_items}</ul>',
        "failures": f'<ul id="failures-list">{failure_items}</ul>',
        "deploy": _deploy(run),
        "trials": '<p class="caption">One row per measurement, in the order they were made; click a column to sort. '
                  "Changes are against the baseline measured at the same stage (positive = better).</p>"
                  + _trials_table(run),
    }
    sections = "\n".join(f'<section id="{sid}"><h2>{escape(name)}</h2>{body[sid]}</section>' for sid, name in SECTIONS)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
{verdict}
<nav>{nav}</nav>
{sections}
<script type="application/json" id="result-data">{data_json}</script>
<script>{JS}</script>
</body></html>
"""
