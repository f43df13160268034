"""Export an answer: OUT/best/model.onnx (or model.xml + model.bin, an OpenVINO IR), OUT/best/deploy.json (what
`cvtune run` and `cvtune.load_deployed` read: runtime, threads, batch, instances, input size, preprocessing and where
it came from, the passes that made the model, and what this machine measured) and OUT/best/candidate.json. The
anytime search exports the model as given first and replaces the folder as a whole each time a better answer is
confirmed, so OUT/best is always one complete, valid answer."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Any

from ..files import atomic_files, json_document, model_files
from .records import Trial
from .space import Candidate
from .trials import Search

DEPLOY_NAME = "deploy.json"
BEST_DIR = "best"


def model_name(path: str | Path) -> str:
    """The exported model's file name, of the built model's format: model.onnx, or model.xml (an OpenVINO IR,
    which NNCF's int8 writes; its model.bin goes beside it)."""
    return f"model{Path(path).suffix.lower()}"


def deploy_dict(search: Search, cand: Candidate, *, timing: Trial | None, accuracy: Trial | None,
                expected: dict[str, Any] | None = None, model: str = "model.onnx") -> dict[str, Any]:
    """The deploy.json of `cand`: how to run it, and what was measured (`expected` adds the verdicts)."""
    spec = search.ctx.task_spec(cand)
    t = timing.timing if timing is not None else None
    metric = accuracy.metric if accuracy is not None else None
    return {
        "model": model,
        "runtime": cand.runtime.to_dict(),
        "task": spec.name,
        "task_options": search.ctx.task_options(cand.input_scale),
        "input_size": list(cand.input_size) if cand.input_size else None,
        "batch": cand.batch,
        "instances": cand.instances,
        "preprocessing": spec.preprocessing.to_dict() if spec.preprocessing else None,
        "preprocessing_source": spec.preprocessing_source or "task default",
        "transforms": [{"pass": p.name, "description": p.describe(), "settings": p.settings()} for p in cand.passes],
        "expected": {
            "p50_ms": t.p50_ms if t else None,
            "p90_ms": t.p90_ms if t else None,
            "throughput_ips": t.throughput_ips if t else None,
            "input_shape": list(timing.input_shape) if timing is not None else None,
            "metric": {"name": metric.name if metric else None, "value": metric.value if metric else None,
                       "ci95": [metric.ci_low, metric.ci_high] if metric else [None, None],
                       "n_images": metric.n_images if metric else None,
                       "budget": search.config.budget.to_dict()},
            "machine": search.store.get_meta("machine", {}).get("cpu") or platform.machine(),
            **(expected or {}),
        },
    }


def export_answer(search: Search, cand: Candidate, *, timing: Trial | None, accuracy: Trial | None,
                  expected: dict[str, Any] | None = None) -> Path | None:
    """Write OUT/best for `cand` (built into a new folder, then swapped in); returns the deploy.json path."""
    path, _, error = search.models.path(cand)
    if path is None:
        search.notes.append(f"could not export {cand.label()}: {error}")
        return None
    best_dir = Path(search.config.out) / BEST_DIR
    name = model_name(path)
    deploy = json_document("deploy", deploy_dict(search, cand, timing=timing, accuracy=accuracy, expected=expected,
                                                 model=name))
    candidate = json_document("candidate", {"source_model": str(search.ctx.source), "candidate": cand.to_dict(),
                                            "key": cand.key(), "label": cand.label()})
    sources = model_files(path)
    models = model_files(best_dir / name)  # an OpenVINO IR: model.xml and model.bin
    # one commit, deploy.json last: it never names a model that is not (yet) the answer
    with atomic_files(best_dir / DEPLOY_NAME, *models, best_dir / "candidate.json",
                      size_hint=sum(p.stat().st_size for p in sources)) as (tmp_deploy, *tmp_models, tmp_candidate):
        for source, tmp in zip(sources, tmp_models, strict=True):
            shutil.copyfile(source, tmp)
        for tmp, doc in ((tmp_deploy, deploy), (tmp_candidate, candidate)):
            text = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
            tmp.write_bytes(text.encode("utf-8", "backslashreplace"))
    for stale in best_dir.glob("model.*"):  # an earlier answer's model in another format
        if stale not in models:
            stale.unlink(missing_ok=True)
    return best_dir / DEPLOY_NAME
