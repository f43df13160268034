"""Export the chosen candidate: OUT/best/model.onnx and OUT/best/deploy.json, the file `cvtune run` and
`cvtune.load_deployed(path)` consume (runtime, threads, batch, instances, input size, preprocessing, the passes
that made the model, and the latency and metric this machine measured); plus OUT/best/candidate.json."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_files, json_document
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
    deploy = json_document("deploy", deploy_dict(result, search, result.best))
    candidate = json_document("candidate", {"source_model": str(search.ctx.source), "candidate": cand.to_dict(),
                                            "key": cand.key(), "label": cand.label()})
    # one commit, deploy.json last: it never names a model that is not (yet) the chosen one
    with atomic_files(best_dir / DEPLOY_NAME, best_dir / "model.onnx", best_dir / "candidate.json",
                      size_hint=Path(path).stat().st_size) as (tmp_deploy, tmp_model, tmp_candidate):
        shutil.copyfile(path, tmp_model)
        for tmp, doc in ((tmp_deploy, deploy), (tmp_candidate, candidate)):
            text = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
            tmp.write_bytes(text.encode("utf-8", "backslashreplace"))
    return best_dir / DEPLOY_NAME
