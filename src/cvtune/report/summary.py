"""The headline numbers every report format shows: baseline vs chosen, speed-up, metric drop, budget verdict."""

from __future__ import annotations

from typing import Any

from ..search.records import Trial
from .data import RunData


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} ms"


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _metric(trial: Trial) -> str:
    m = trial.metric
    return "n/a" if m is None else f"{m.name} {m.value:.4f}"


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
    if base:
        n = base.metric.n_images if base.metric else "?"
        rows.append(("baseline", f"{base.label}: p50 {_ms((base_final or base).p50_ms)}, {_metric(base)} on "
                                 f"{n} images"))
    if best and res.get("improved"):
        rows.append(("answer", f"{best.label}: p50 {_ms((best_final or best).p50_ms)}, {_metric(best)}"))
        speed = res.get("speedup")
        rows.append(("speed-up (p50, back to back)", f"{speed:.2f}x" if speed else "n/a"))
        if run.objective.name != "latency" and res.get("gain"):
            rows.append((f"{run.objective.gain_label} (back to back)", f"{res['gain']:.2f}x"))
        drop = res.get("drop")
        rows.append(("metric drop", f"{budget.describe(drop) if drop is not None else 'n/a'} (within budget)"))
        claim = res.get("claim") or {}
        if claim:
            rows.append(("re-measured through deploy.json",
                         f"{_num(claim.get('remeasured'))} on {claim.get('remeasured_images')} images (claimed "
                         f"{_num(claim.get('claimed'))} on {claim.get('claimed_images')}): "
                         f"{'holds' if claim.get('holds') else 'DOES NOT HOLD'}"))
    else:
        rows.append(("answer", "the model as given: nothing beat it within the budget and the time"))
    rows.append(("trials", f"{res.get('n_trials', len(run.trials))} ({res.get('n_failed', 0)} failed or ruled out) "
                           f"over {res.get('n_candidates', '?')} candidates, strategy {res.get('strategy', '?')}"))
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


TABLE_COLUMNS = ("label", "rung", "status", "p50_ms", "p90_ms", "throughput_ips", "size_bytes", "metric", "drop",
                 "n_images", "seconds", "error")


def table_row(run: RunData, trial: Trial) -> dict[str, Any]:
    """One trial as the table's columns, with its drop against the baseline measured at the same rung."""
    t, m = trial.timing, trial.metric
    return {"label": trial.label, "rung": trial.rung, "status": trial.status,
            "p50_ms": t.p50_ms if t else None, "p90_ms": t.p90_ms if t else None,
            "throughput_ips": t.throughput_ips if t else None, "size_bytes": trial.size_bytes,
            "metric": m.value if m else None, "drop": run.drop(trial), "n_images": m.n_images if m else None,
            "seconds": trial.seconds, "error": trial.error, "key": trial.key}


def table_rows(run: RunData) -> list[dict[str, Any]]:
    """Every trial with its drop against the baseline measured at the same rung."""
    return [table_row(run, t) for t in run.trials]
