"""Export the chosen candidate: OUT/best/model.onnx and OUT/best/deploy.json, the file `cvtune run` and
`cvtune.load_deployed(path)` consume (runtime, threads, batch, instances, input size, preprocessing, the passes
that made the model, and the latency and metric this machine measured); plus OUT/best/candidate.json."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_path, write_json
from .records import Trial

if TYPE_CHECKING:
    from .config import OptimizeResult
    from .trials import Search

DEPLOY_NAME = "deploy.json"


def deploy_dict(result: OptimizeResult, search: Search, best: Trial) -> dict[str, Any]:
    cand = best.candidate
    base = result.baseline
    timing = (result.best_final or best).timing
    spec = search.ctx.task_spec(cand)
    metric = best.metric
    return {
        "model": "model.onnx",
        "runtime": cand.runtime.to_dict(),
        "task": spec.name,
        "task_options": search.ctx.task_options(cand.input_scale),
        "input_size": list(cand.input_size) if cand.input_size else None,
        "batch": cand.batch,
        "instances": cand.instances,
        "preprocessing": spec.preprocessing.to_dict() if spec.preprocessing else None,
        "preprocessing_source": spec.preprocessing_source or "task default",
        "transforms": [{"pass": p.name, "description": p.describe(), "settings": p.settings()}
                       for p in cand.passes],
        "expected": {
            "p50_ms": timing.p50_ms if timing else None,
            "p90_ms": timing.p90_ms if timing else None,
            "throughput_ips": timing.throughput_ips if timing else None,
            "input_shape": list(best.input_shape),
            "metric": {"name": metric.name if metric else None, "value": metric.value if metric else None,
                       "ci95": [metric.ci_low, metric.ci_high] if metric else [None, None],
                       "n_images": metric.n_images if metric else None,
                       "baseline": base.metric.value if base and base.metric else None, "drop": result.drop,
                       "budget": search.config.budget.to_dict(), "met_budget": result.met_budget},
            "speedup_vs_baseline": result.speedup,
            "baseline_p50_ms": (result.baseline_final or base).p50_ms if (result.baseline_final or base) else None,
            "machine": search.store.get_meta("machine", {}).get("cpu") or platform.machine(),
        },
    }


def export_best(result: OptimizeResult, search: Search) -> Path | None:
    """Write OUT/best/{model.onnx, deploy.json, candidate.json} atomically; returns the deploy.json path."""
    if result.best is None:
        return None
    cand = result.best.candidate
    path, _, error = search.models.path(cand)
    if path is None:  # pragma: no cover - a measured candidate's model exists
        search.notes.append(f"could not export the chosen model: {error}")
        return None
    best_dir = Path(search.config.out) / "best"
    best_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(best_dir / "model.onnx") as tmp:
        shutil.copyfile(path, tmp)
    write_json(best_dir / "candidate.json", {"source_model": str(search.ctx.source), "candidate": cand.to_dict(),
                                             "key": cand.key(), "label": cand.label()})
    return write_json(best_dir / DEPLOY_NAME, deploy_dict(result, search, result.best))
