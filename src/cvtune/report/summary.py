"""The headline numbers every report format shows (baseline vs chosen at the back-to-back timing the ratios use,
speed-up, metric change with its CI, the budget verdict, the re-measured claim, memory and load time) and the
trial table's rows, in human units and one sign convention (metric change vs baseline, positive = better)."""

from __future__ import annotations

from typing import Any

from ..search.records import Trial
from . import units
from .data import RunData
from .sections import expected_gain, spread, stage, why_text


def _metric(trial: Trial) -> str:
    m = trial.metric
    if m is None:
        return "n/a"
    ci = f" (95% CI {m.ci_low:.4f}-{m.ci_high:.4f})" if m.ci_low is not None and m.ci_high is not None else ""
    return f"{m.name} {m.value:.4f}{ci} on {m.n_images} images"


def latency(trial: Trial | None) -> str:
    """'p50 7.65 ms (p10-p90 7.1-9.2 ms, 48 runs)'."""
    if trial is None or trial.timing is None:
        return "n/a"
    p10, p50, p90 = spread(trial.timing)
    runs = f", {trial.timing.runs} runs" if trial.timing.runs else ""
    if p10 is not None:
        return f"p50 {units.ms(p50)} (p10-p90 {units.ms_range(p10, p90)}{runs})"
    return f"p50 {units.ms(p50)} (p90 {units.ms(p90)}{runs})"


def _resources(trial: Trial | None) -> str:
    t = trial.timing if trial is not None else None
    if t is None:
        return "n/a"
    parts = [f"peak memory {t.peak_rss_mb:.0f} MB" if t.peak_rss_mb else "",
             f"load {units.ms(t.load_ms)}" if t.load_ms else "", units.ips(t.throughput_ips)]
    return ", ".join(p for p in parts if p) or "n/a"


def _claim(claim: dict[str, Any] | None) -> str:
    if claim is None:
        return "not recorded"

    def num(v: Any) -> str:
        if isinstance(v, int | float):
            return f"{v:.4g}"
        if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
            return f"{v[0]:.4g}-{v[1]:.4g}"
        return str(v)

    text = (f"claimed {num(claim.get('claimed'))} on {claim.get('claimed_images', '?')} images, re-measured through "
            f"deploy.json {num(claim.get('remeasured'))} on {claim.get('remeasured_images', '?')}")
    ci = claim.get("claimed_ci", claim.get("ci"))
    if ci is not None and None not in ci:
        text += f" (claimed 95% CI {num(ci)})"
    holds = claim.get("holds", claim.get("agrees"))
    return text + (": holds" if holds else ": does NOT hold" if holds is not None else "")


def summary_rows(run: RunData) -> list[tuple[str, str]]:
    """(label, value) pairs, plain text (callers escape for HTML)."""
    res = run.result or {}
    cfg = run.config
    budget = run.budget
    base, best = run.baseline, run.best
    base_final, best_final = run.baseline_final, run.best_final
    rows = [("model", f"{cfg.get('model')}"), ("task / data", f"{cfg.get('task')} on {cfg.get('data')}"),
            ("objective", f"{run.objective.name} ({run.objective.unit}), accuracy budget: at most "
                          f"{budget.describe()} drop" + (" (relative)" if budget.relative else ""))]
    pre = run.facts.get("preprocessing_source")
    if pre is not None:
        rows.append(("preprocessing", pre or "the task's default"))
    timing_note = "final back-to-back timing" if base_final else "timed alone"
    if base:
        rows.append(("baseline", f"{base.label}: {latency(base_final or base)} [{timing_note}]; {_metric(base)}"))
    if best and res.get("improved"):
        rows.append(("answer", f"{best.label}: {latency(best_final or best)} [{timing_note}]; {_metric(best)}"))
        speed = res.get("speedup")
        rows.append(("speed-up (p50, back to back)", f"{speed:.2f}x" if speed else "n/a"))
        if run.objective.name != "latency" and res.get("gain"):
            rows.append((f"{run.objective.gain_label} (back to back)", f"{res['gain']:.2f}x"))
        change = run.change(best)
        ci = run.change_ci(best)
        ci_text = f" (95% CI {units.change(ci[0], budget)} to {units.change(ci[1], budget)})" if ci else ""
        rows.append(("metric change vs baseline", f"{units.change(change, budget)}{ci_text}, positive = better, "
                                                  f"paired on the same images (within budget: at most "
                                                  f"{budget.describe()} drop allowed)"))
        rows.append(("claim re-measured", _claim(run.claim)))
        rows.append(("memory, load, throughput", f"chosen: {_resources(best_final or best)}; baseline: "
                                                 f"{_resources(base_final or base)}"))
    else:
        rows.append(("answer", "the model as given: nothing beat it within the budget and the time (exit code 3)"))
    rows.append(("trials", f"{res.get('n_trials', len(run.trials))} ({res.get('n_failed', 0)} failed or ruled out) "
                           f"over {res.get('n_candidates', '?')} candidates, strategy {res.get('strategy', '?')}, "
                           f"{units.seconds(res.get('seconds'))}"))
    if res.get("stopped_early"):
        rows.append(("stopped early", res["stopped_early"]))
    for note in res.get("notes", []):
        rows.append(("note", note))
    m = run.machine
    if m:
        versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
        cores = f", {m.get('physical_cores')} physical / {m.get('logical_cores')} logical cores" \
            if m.get("physical_cores") else ""
        rows.append(("machine", f"{m.get('cpu') or '?'}{cores}; {m.get('platform', '')}"))
        rows.append(("libraries", f"python {m.get('python', '?')}, {versions}"))
    return rows


# The trial table's columns (CSV headers; the HTML shows them in words). `change` is the metric change against
# the baseline measured at the same stage, positive = better, in the budget's units (a fraction when relative).
TABLE_COLUMNS = ("number", "label", "stage", "status", "p50_ms", "p10_ms", "p90_ms", "throughput_ips",
                 "peak_rss_mb", "load_ms", "size_bytes", "metric", "metric_ci_low", "metric_ci_high", "change",
                 "n_images", "expected_gain", "seconds", "error")


def table_row(run: RunData, trial: Trial, numbers: dict[str, int] | None = None) -> dict[str, Any]:
    """One trial as the table's columns."""
    t, m = trial.timing, trial.metric
    p10, p50, p90 = spread(t)
    numbers = numbers if numbers is not None else run.candidate_numbers()
    return {"number": numbers.get(trial.key), "label": trial.label, "stage": stage(trial), "status": trial.status,
            "p50_ms": p50, "p10_ms": p10, "p90_ms": p90, "throughput_ips": t.throughput_ips if t else None,
            "peak_rss_mb": t.peak_rss_mb or None if t else None, "load_ms": t.load_ms or None if t else None,
            "size_bytes": trial.size_bytes, "metric": m.value if m else None,
            "metric_ci_low": m.ci_low if m else None, "metric_ci_high": m.ci_high if m else None,
            "change": run.change(trial), "n_images": m.n_images if m else None,
            "expected_gain": expected_gain(trial), "why": why_text(trial),
            "seconds": trial.seconds, "error": trial.error, "key": trial.key,
            "metric_name": m.name if m else None}


def table_rows(run: RunData) -> list[dict[str, Any]]:
    """Every trial, in the order it was measured."""
    numbers = run.candidate_numbers()
    return [table_row(run, t, numbers) for t in run.trials]
