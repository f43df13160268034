"""Reports: regenerated from the store, escaped, findings computed from trials, and the HTML renders in headless
Chromium (chart and table present, no console errors)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from cvtune.cli import run_cli
from cvtune.passes import pass_choice
from cvtune.report import RunData, render_html, render_markdown
from cvtune.report.findings import compute_findings, failure_findings
from cvtune.runtimes import runtime_from_dict
from cvtune.search import Candidate, Measurement, MetricResult, Trial


def _trial(runtime, p50, metric, *, quant="none", status="ok", error="", rung="screen", threads=1) -> Trial:
    passes = () if quant == "none" else (pass_choice(quant),)
    ok = status == "ok"
    return Trial(Candidate(passes, runtime_from_dict({**runtime, "threads": threads})), rung, status, error,
                 timing=Measurement(p50, p50, p50, 1000 / p50) if ok else None,
                 metric=MetricResult("hmean", metric, n_images=4) if ok else None, size_bytes=1000, seconds=1.0)


OPENCV = {"runtime": "opencv", "engine": "new", "target": "cpu"}
CLASSIC = {"runtime": "opencv", "engine": "classic", "target": "cpu"}
ORT = {"runtime": "ort", "provider": "cpu"}


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


def test_strings_from_models_and_trials_are_escaped(tmp_path):
    hostile = '<script>alert("x")</script>'
    trials = [_trial(OPENCV, 10.0, 0.9, rung="full"), _trial(ORT, 5.0, 0.9, rung="full"),
              _trial(ORT, 5.0, 0.9, rung="full", status="failed", error=hostile, threads=2)]
    run = RunData(out=tmp_path, config={"model": hostile, "budget": {"value": 0.01, "relative": True}},
                  result={"baseline": trials[0].to_dict(), "best": trials[1].to_dict(), "met_budget": True,
                          "front": [trials[1].key]},
                  facts={"model_name": hostile}, machine={}, trials=trials)
    html = render_html(run)
    assert hostile not in html and "&lt;script&gt;" in html
    markdown = render_markdown(run)  # Markdown viewers render raw HTML: names are shown as text, never run
    assert hostile not in markdown and "&lt;script&gt;alert" in markdown


def test_cvtune_report_regenerates_every_file(optimize_run, capsys):
    config, result = optimize_run
    for name in ("report.html", "report.md", "trials.csv"):
        (config.out / name).unlink()
    assert run_cli(["report", str(config.out)]) == 0
    assert all((config.out / n).is_file() for n in ("report.html", "report.md", "trials.csv"))
    with open(config.out / "trials.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == result.n_trials
    md = (config.out / "report.md").read_text()
    assert "speed-up" in md and "ONNX Runtime" in md and "SIGABRT" in md


def test_report_of_a_folder_without_a_run_is_one_clear_line(tmp_path, capsys):
    assert run_cli(["report", str(tmp_path)]) == 2
    assert "holds no trials.sqlite" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make setup installs Debian's chromium)")
def test_report_renders_in_headless_chromium_without_console_errors(optimize_run, tmp_path):
    config, result = optimize_run
    report = Path(config.out / "report.html").resolve()
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom, log = proc.stdout, proc.stderr
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not console, console
    assert 'data-ready="1"' in dom  # the table-sorting script ran to its end
    assert dom.count('class="point ') >= 2 and 'class="point best"' in dom and 'class="point baseline"' in dom
    body = dom.split('<table id="trials"', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr class=") == result.n_trials
