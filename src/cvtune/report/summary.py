"""The headline numbers every report format shows: baseline vs chosen, speed-up, metric drop, budget verdict."""

from __future__ import annotations

from typing import Any

from .data import RunData


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} ms"


def summary_rows(run: RunData) -> list[tuple[str, str]]:
    """(label, value) pairs, plain text (callers escape for HTML)."""
    res = run.result or {}
    cfg = run.config
    budget = run.budget
    base, best = res.get("baseline"), res.get("best")
    base_final, best_final = res.get("baseline_final"), res.get("best_final")
    rows = [("model", f"{cfg.get('model')}"), ("task / data", f"{cfg.get('task')} on {cfg.get('data')}"),
            ("objective", f"{run.objective.name} ({run.objective.unit}), accuracy budget: at most "
                          f"{budget.describe()} drop" + (" (relative)" if budget.relative else ""))]
    if base:
        rows.append(("baseline", f"{base['label']}: p50 {_ms((base_final or base).get('p50_ms'))}, "
                                 f"{base.get('metric_name')} {_num(base.get('metric'))} on "
                                 f"{base.get('n_images')} images"))
    if best:
        rows.append(("chosen", f"{best['label']}: p50 {_ms((best_final or best).get('p50_ms'))}, "
                               f"{best.get('metric_name')} {_num(best.get('metric'))}"))
        speed = res.get("speedup")
        rows.append(("speed-up (p50, back to back)", f"{speed:.2f}x" if speed else "n/a"))
        if run.objective.name != "latency" and res.get("gain"):
            rows.append((f"{run.objective.gain_label} (back to back)", f"{res['gain']:.2f}x"))
        drop = res.get("drop")
        verdict = "within budget" if res.get("met_budget") else "OVER BUDGET: no candidate met it; this is the closest"
        rows.append(("metric drop", f"{budget.describe(drop) if drop is not None else 'n/a'} ({verdict})"))
    else:
        rows.append(("chosen", "none: no candidate could be measured on the full evaluation split"))
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


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


TABLE_COLUMNS = ("label", "rung", "status", "p50_ms", "p90_ms", "throughput_ips", "size_bytes", "metric", "drop",
                 "n_images", "seconds", "error")


def table_rows(run: RunData) -> list[dict[str, Any]]:
    """Every trial with its drop against the baseline measured at the same rung."""
    budget = run.budget
    base_key = ((run.result or {}).get("baseline") or {}).get("key")
    base_metric = {r["rung"]: r["metric"] for r in run.trials if r["key"] == base_key and r["status"] == "ok"}
    rows = []
    for r in run.trials:
        ref = base_metric.get(r["rung"]) if not r["rung"].startswith("final") else base_metric.get("full")
        drop = budget.drop(ref, r["metric"]) if ref is not None and r.get("metric") is not None else None
        rows.append({**{c: r.get(c) for c in TABLE_COLUMNS if c != "drop"}, "drop": drop, "key": r["key"]})
    return rows
