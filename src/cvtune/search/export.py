"""Export the chosen candidate: OUT/best/model.onnx and OUT/best/deploy.json, the file `cvtune run` and
`cvtune.load_deployed(path)` consume (runtime, threads, batch, instances, input size, preprocessing, and the
latency and metric this machine measured); plus OUT/best/candidate.json saying how the model was made."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_path, write_json
from .space import Candidate

if TYPE_CHECKING:
    from .config import OptimizeResult
    from .trials import Search

DEPLOY_NAME = "deploy.json"


def deploy_dict(result: OptimizeResult, search: Search, cand: Candidate) -> dict[str, Any]:
    best, base = result.best or {}, result.baseline or {}
    timing = result.best_final or best
    return {
        "model": "model.onnx",
        "runtime": cand.runtime.to_dict(),
        "task": search.config.task,
        "task_options": search.task_options(cand.transforms.input_scale),
        "input_size": list(cand.transforms.input_size) if cand.transforms.input_size else None,
        "batch": cand.batch,
        "instances": cand.instances,
        "preprocessing": search.preprocessing,
        "expected": {
            "p50_ms": timing.get("p50_ms"),
            "p90_ms": timing.get("p90_ms"),
            "throughput_ips": timing.get("throughput_ips"),
            "input_shape": best.get("details", {}).get("input_shape"),
            "metric": {"name": best.get("metric_name"), "value": best.get("metric"),
                       "ci95": [best.get("metric_ci_low"), best.get("metric_ci_high")],
                       "n_images": best.get("n_images"), "baseline": base.get("metric"), "drop": result.drop,
                       "budget": search.config.budget.to_dict(), "met_budget": result.met_budget},
            "speedup_vs_baseline": result.speedup,
            "baseline_p50_ms": (result.baseline_final or base).get("p50_ms"),
            "machine": search.store.get_meta("machine", {}).get("cpu") or platform.machine(),
        },
    }


def export_best(result: OptimizeResult, search: Search) -> Path | None:
    """Write OUT/best/{model.onnx, deploy.json} atomically; returns the deploy.json path."""
    if result.best is None:
        return None
    cand = Candidate.from_dict(result.best["candidate"])
    path, _, error = search.model_path(cand)
    if path is None:  # pragma: no cover - a measured candidate's model exists
        search.notes.append(f"could not export the chosen model: {error}")
        return None
    best_dir = Path(search.config.out) / "best"
    best_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(best_dir / "model.onnx") as tmp:
        shutil.copyfile(path, tmp)
    write_json(best_dir / "candidate.json", {"source_model": str(search.source), "candidate": cand.to_dict(),
                                             "key": cand.key(), "label": cand.label()})
    return write_json(best_dir / DEPLOY_NAME, deploy_dict(result, search, cand))
