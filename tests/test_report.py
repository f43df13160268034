"""Reports: regenerated from the store, escaped, one sign convention, the baseline at the timing the ratios use,
the sections the optimizer may record (timeline, profiles, claim) rendered when present and "not recorded" when
absent, sensitivity curves next to the run, and the HTML checked in headless Chromium at 1280 and 390 px."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
from html import unescape as html_unescape
from pathlib import Path

import pytest

from cvtune.cli import run_cli
from cvtune.passes import pass_choice
from cvtune.report import RunData, load_run, render_csv, render_html, render_markdown, write_report
from cvtune.report.data import find_sensitivity
from cvtune.report.findings import compute_findings, failure_findings
from cvtune.report.sections import chart_points, technique_grid
from cvtune.runtimes import runtime_from_dict
from cvtune.search import Candidate, Measurement, MetricResult, Trial

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _trial(runtime, p50, metric, *, quant="none", status="ok", error="", rung="result", threads=1, started=0.0,
           times=(), verdict="within") -> Trial:
    """A candidate's summary row as the anytime search records it (timing, metric and the decision taken)."""
    passes = () if quant == "none" else (pass_choice(quant),)
    ok = status == "ok"
    return Trial(Candidate(passes, runtime_from_dict({**runtime, "threads": threads})), rung, status, error,
                 timing=Measurement(p50, p50, p50, 1000 / p50, times_ms=tuple(times)) if ok else None,
                 metric=MetricResult("hmean", metric, metric - 0.02, metric + 0.01, n_images=4) if ok else None,
                 size_bytes=1000, seconds=1.0, started=started, extra={"verdict": verdict})


OPENCV = {"runtime": "opencv", "engine": "new", "target": "cpu"}
CLASSIC = {"runtime": "opencv", "engine": "classic", "target": "cpu"}
ORT = {"runtime": "ort", "provider": "cpu"}


def _run(tmp_path, trials, *, baseline, best, front=(), finals=(), **meta) -> RunData:
    """A RunData as load_run would read it back (baseline/best as full-rung trials, finals as back-to-back)."""
    result = {"baseline": baseline.to_dict(), "best": best.to_dict(), "met_budget": True, "improved": True,
              "front": [t.key for t in front], "exported": str(tmp_path / "best" / "deploy.json")}
    if finals:
        result.update(baseline_final=finals[0].to_dict(), best_final=finals[1].to_dict())
    result.update(meta.pop("result", {}))
    return RunData(out=tmp_path, config={"model": "det.onnx", "data": "images",
                                         "budget": {"value": 0.01, "relative": True}},
                   result=result, facts={"model_name": "det.onnx"}, machine={}, trials=list(trials), **meta)


def test_findings_compare_candidates_that_differ_in_one_setting():
    trials = [_trial(OPENCV, 100.0, 0.90), _trial(ORT, 50.0, 0.90), _trial(CLASSIC, 200.0, 0.90),
              _trial(CLASSIC, 260.0, 0.89, quant="int8-qoperator")]
    texts = [f.text for f in compute_findings(trials)]
    assert any(t.startswith("ONNX Runtime was 2.00x faster than OpenCV new engine") for t in texts)
    assert any(t.startswith("int8-qoperator was 1.30x slower than fp32 on OpenCV classic engine") for t in texts)
    assert not compute_findings(trials[:1])


def test_failures_are_grouped_by_reason():
    trials = [_trial(ORT, None, None, status="failed", error="crashed with SIGSEGV"),
              _trial(ORT, None, None, status="failed", error="crashed with SIGSEGV", threads=2),
              _trial(CLASSIC, None, None, status="ruled_out", error="ruled out by probe: no QLinearConv")]
    lines = failure_findings(trials)
    assert lines[0].startswith("2 candidates failed: crashed with SIGSEGV") and "ruled out" in lines[1]


def test_one_sign_convention_positive_is_better_in_chart_table_and_summary(tmp_path):
    base = _trial(OPENCV, 100.0, 0.90, rung="result")
    worse = _trial(ORT, 50.0, 0.891, rung="result", started=1.0)  # 1% lower metric
    better = _trial(ORT, 60.0, 0.909, rung="result", threads=2, started=2.0)  # 1% higher
    run = _run(tmp_path, [base, worse, better], baseline=base, best=better)
    points = {p.key: p for p in chart_points(run)}
    assert points[worse.key].y == pytest.approx(-1.0) and points[better.key].y == pytest.approx(1.0)  # percent
    assert run.change(worse) == pytest.approx(-0.01)
    html = render_html(run)
    row = html.split('id="trials"', 1)[1].split(f'data-key="{worse.key}"', 1)[1].split("</tr>", 1)[0]
    assert ">-1.00%<" in row and "+1.00%" in html.split('id="summary"', 1)[1].split("</section>", 1)[0]
    assert "drop</th>" not in html  # no column with the opposite sign
    rows = {r["key"]: r for r in csv.DictReader(io.StringIO(render_csv(run)))}
    assert float(rows[worse.key]["change"]) == pytest.approx(-0.01)


def test_the_baseline_sits_at_the_back_to_back_timing_the_ratios_use(tmp_path):
    base = _trial(OPENCV, 245.0, 0.90, rung="result")
    best = _trial(ORT, 120.0, 0.90, rung="result", started=1.0)
    finals = (_trial(OPENCV, 274.0, 0.90, rung=f"final:{best.key}", times=[270, 274, 280]),
              _trial(ORT, 130.0, 0.90, rung=f"final:{best.key}", times=[125, 130, 140]))
    run = _run(tmp_path, [base, best, *finals], baseline=base, best=best, finals=finals)
    points = {p.kind: p for p in chart_points(run)}
    assert points["baseline"].x == 274.0 and points["best"].x == 130.0
    assert points["best"].x_lo == pytest.approx(126.0) and points["best"].x_hi == pytest.approx(138.0)  # p10, p90
    html = render_html(run)
    table = html.split('id="trials"', 1)[1].split("</table>", 1)[0]
    assert "final back-to-back timing" in table and "final:" not in table
    assert "p50 274 ms" in html  # the summary's baseline is the final timing, not the full-split one


def test_the_pareto_front_is_drawn_over_the_chosen_marker_and_the_legend_lists_only_what_is_drawn(tmp_path):
    base = _trial(OPENCV, 100.0, 0.90, rung="result")
    best = _trial(ORT, 50.0, 0.90, rung="result", started=1.0)
    alone = render_html(_run(tmp_path, [base, best], baseline=base, best=best, front=[best]))
    svg = alone.split('<div id="scatter"', 1)[1].split("</svg>", 1)[0]
    assert 'class="front"' not in svg and "Pareto front (one point)" in svg  # one point: a ring, no line
    assert svg.index('class="point best"') < svg.index('class="front-ring"')  # the ring is on top
    other = _trial(ORT, 40.0, 0.85, rung="result", threads=2, started=2.0)
    two = render_html(_run(tmp_path, [base, best, other], baseline=base, best=best, front=[best, other]))
    svg = two.split('<div id="scatter"', 1)[1].split("</svg>", 1)[0]
    assert svg.index('class="point best"') < svg.index('class="front"') and ">Pareto front<" in svg
    assert "#1 baseline: opencv:new/cpu t1" in svg and "#2 chosen: ort:cpu t1" in svg  # named without hovering


def test_recorded_sections_render_and_absent_ones_say_not_recorded(tmp_path):
    base = _trial(OPENCV, 100.0, 0.90, rung="result")
    best = _trial(ORT, 50.0, 0.90, rung="result", started=1.0)
    bare = _run(tmp_path, [base, best], baseline=base, best=best)
    html, md = render_html(bare), render_markdown(bare)
    assert "expected gain" not in html  # no trial recorded why it was tried: no empty column
    for section in ("profile", "timeline"):
        assert "not recorded" in html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    assert "claim re-measured</td><td>not recorded" in html and "not computed" in html
    assert md.count("not recorded") >= 2
    full = _run(tmp_path, [base, best], baseline=base, best=best,
                timeline=[{"t": 3.0, "key": base.key, "value": 100.0, "metric": 0.9},
                          {"t": 9.0, "key": best.key, "value": 50.0, "metric": 0.9}],
                profiles={"baseline": {"Conv": 80.0, "Add": 20.0}, "best": {"Conv": 41.0, "Relu": 9.0}},
                result={"claim": {"claimed": 0.9, "remeasured": 0.899, "ci": [0.88, 0.91], "agrees": True}})
    html = render_html(full)
    assert "expected gain" not in html
    why = render_html(_run(tmp_path, [base, best.with_(extra={"expected_gain": 2.5, "why": "ort x2.5"})],
                           baseline=base, best=best))
    assert "<th>expected gain</th>" in why and 'data-label="expected gain" data-v="2.5">2.5x' in why
    assert "ort x2.5" in why
    assert 'class="chart timeline"' in html and "<b>9 s</b> ort:cpu t1 | as given: 50.0 ms, hmean 0.9000" in html
    assert "baseline: opencv:new/cpu t1 | as given: 100.00 ms per inference" in html and "80.00 ms (80%)" in html
    assert "re-measured through deploy.json 0.899 on ? (claimed 95% CI 0.88-0.91): holds" in html
    grid = technique_grid(full)
    assert grid.cells[("ONNX Runtime", "as given")][0] == pytest.approx(2.0)


def test_strings_from_models_and_trials_are_escaped(tmp_path):
    hostile = '<script>alert("x")</script>'
    trials = [_trial(OPENCV, 10.0, 0.9, rung="result"), _trial(ORT, 5.0, 0.9, rung="result"),
              _trial(ORT, 5.0, 0.9, rung="result", status="failed", error=hostile, threads=2)]
    (tmp_path / "sens.json").write_text(json.dumps(
        {"format": "cvtune-sensitivity/1", "method": hostile, "metric": hostile, "baseline": 0.9,
         "curves": [{"name": hostile, "metrics": {"0.5": 0.8}}]}))
    run = RunData(out=tmp_path, config={"model": hostile, "data": hostile,
                                        "budget": {"value": 0.01, "relative": True}},
                  result={"baseline": trials[0].to_dict(), "best": trials[1].to_dict(), "met_budget": True,
                          "improved": True,
                          "front": [trials[1].key], "exported": hostile, "notes": [hostile],
                          "claim": {"claimed": hostile}},
                  facts={"model_name": hostile}, machine={"cpu": hostile}, trials=trials,
                  timeline=[{"t": 1.0, "key": hostile, "value": 5.0}], profiles={hostile: {hostile: 1.0}},
                  sensitivity=find_sensitivity(tmp_path))
    html = render_html(run)
    assert hostile not in html and "&lt;script&gt;" in html
    markdown = render_markdown(run)  # Markdown viewers render raw HTML: names are shown as text, never run
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)  # a fenced command is shown verbatim, as text
    assert hostile not in prose and "&lt;script&gt;alert" in prose
    assert markdown.count("```") % 2 == 0  # no name closes a fence early


def test_cvtune_report_regenerates_every_file(optimize_run, capsys):
    config, result = optimize_run
    for name in ("report.html", "report.md", "trials.csv"):
        (config.out / name).unlink()
    assert run_cli(["report", str(config.out)]) == 0
    assert all((config.out / n).is_file() for n in ("report.html", "report.md", "trials.csv"))
    with open(config.out / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(load_run(config.out).trials)  # every stage of every candidate
    assert len({r["key"] for r in rows}) == result.n_trials  # one summary per candidate measured
    md = (config.out / "report.md").read_text()
    assert "speed-up" in md and "ONNX Runtime" in md and "SIGABRT" in md


def test_report_of_a_folder_without_a_run_is_one_clear_line(tmp_path, capsys):
    assert run_cli(["report", str(tmp_path)]) == 2
    assert "holds no trials.sqlite" in capsys.readouterr().err


# ---- the demo-like report with every section filled, in a real browser -------------------------------------------

@pytest.fixture(scope="module")
def filled_run(optimize_run, tmp_path_factory, tiny_image_dir):
    """A copy of the small search's folder (which records per-op-type profiles, the best-so-far timeline and the
    re-measured claim itself), plus a sensitivity JSON next to the run (measured on four layers)."""
    import onnx

    from cvtune.compress.graph import prepare
    from cvtune.compress.sensitivity import analyze_sensitivity
    from cvtune.compress.sparsify import prunable_layers
    config, _ = optimize_run
    out = tmp_path_factory.mktemp("filled") / "run"
    shutil.copytree(config.out, out)
    run = load_run(out)
    assert run.profiles and "baseline" in run.profiles and run.timeline  # recorded by the search itself
    layers = [n.name for n, _ in prunable_layers(prepare(onnx.load(str(config.model))))]
    analyze_sensitivity(config.model, tiny_image_dir, task="fidelity", levels=(0.5, 0.9), limit=2,
                        units=layers[:4], cache=out / "sensitivity.json")
    write_report(out)
    return out


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


# Appended to a copy of the report: measures the page as laid out and hands the numbers to the page around it.
PROBE = """<script>window.addEventListener('load',function(){
var d=document.documentElement,out={scrollWidth:d.scrollWidth,innerWidth:window.innerWidth,svgs:[],wide:[]};
document.querySelectorAll('svg').forEach(function(s){var r=s.getBoundingClientRect();
  out.svgs.push([r.width,r.height]);});
document.querySelectorAll('img').forEach(function(i){out.svgs.push([i.complete?i.naturalWidth:0,i.naturalHeight]);});
document.querySelectorAll('body *').forEach(function(e){var r=e.getBoundingClientRect();
  if(r.right>window.innerWidth+0.5&&!e.closest('.chart-box')){out.wide.push(e.tagName+'.'+e.className);}});
out.ready=document.body.getAttribute('data-ready');parent.postMessage(JSON.stringify(out),'*');});
</script>"""
# The report in a frame of the width under test (a headless window cannot be narrower than 500 px); the probe's
# numbers end up in this page's DOM, which --dump-dom prints.
FRAME = """<!DOCTYPE html><html><body style="margin:0"><pre id="probe"></pre>
<iframe src="{src}" style="width:{width}px;height:900px;border:0;display:block"></iframe>
<script>window.addEventListener('message',function(e){{document.getElementById('probe').textContent=e.data;}});
</script></body></html>"""


def _browser(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make setup installs Debian's chromium)")
def test_report_renders_in_headless_chromium_at_desktop_and_phone_widths(filled_run, tmp_path):
    report = filled_run / "report.html"
    html = report.read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    for section in ("profile", "timeline", "sensitivity"):  # every section filled
        assert "missing" not in html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"))
    for width in (1280, 390):
        frame = tmp_path / f"frame{width}.html"
        frame.write_text(FRAME.format(src=probed.name, width=width))
        proc = _browser(["--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom", frame.as_uri()],
                        tmp_path / f"profile{width}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
        assert not console, console
        probe = json.loads(html_unescape(proc.stdout.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0]))
        assert probe["ready"] == "1"  # the report's own script ran to its end
        assert probe["innerWidth"] == width
        assert probe["scrollWidth"] <= probe["innerWidth"], (width, probe["wide"])
        assert not probe["wide"], (width, probe["wide"])
        assert len(probe["svgs"]) >= 3 and all(w > 0 and h > 0 for w, h in probe["svgs"]), probe["svgs"]
    # the screenshot the README shows (CVTUNE_UPDATE_DOCS=1 writes it to docs/report.png)
    shot = tmp_path / "report.png"
    proc = _browser(["--window-size=1280,2000", f"--screenshot={shot}", report.as_uri()], tmp_path / "shot")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1280, 2000)
    if os.environ.get("CVTUNE_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS / "report.png")


def test_the_committed_screenshot_is_a_full_width_render():
    header = (DOCS / "report.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", header[16:20])[0] == 1280
