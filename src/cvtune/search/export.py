"""Export an answer: OUT/best/model.onnx, OUT/best/deploy.json (what `cvtune run` and `cvtune.load_deployed` read:
runtime, threads, batch, instances, input size, preprocessing and where it came from, the passes that made the
model, and what this machine measured) and OUT/best/candidate.json. The anytime search exports the model as given
first and replaces the folder as a whole each time a better answer is confirmed, so OUT/best is always one
complete, valid answer."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..files import write_json
from .records import Trial
from .space import Candidate
from .trials import Search

DEPLOY_NAME = "deploy.json"
BEST_DIR = "best"


def deploy_dict(search: Search, cand: Candidate, *, timing: Trial | None, accuracy: Trial | None,
                expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """The deploy.json of `cand`: how to run it, and what was measured (`expected` adds the verdicts)."""
    spec = search.ctx.task_spec(cand)
    t = timing.timing if timing is not None else None
    metric = accuracy.metric if accuracy is not None else None
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
    out = Path(search.config.out)
    final = out / BEST_DIR
    staging = Path(tempfile.mkdtemp(prefix=".best-", dir=out))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        shutil.copyfile(path, staging / "model.onnx")
        write_json(staging / "candidate.json", {"source_model": str(search.ctx.source), "candidate": cand.to_dict(),
                                                "key": cand.key(), "label": cand.label()})
        write_json(staging / DEPLOY_NAME, deploy_dict(search, cand, timing=timing, accuracy=accuracy,
                                                      expected=expected))
        old = None
        if final.exists():
            old = out / f".best-old-{os.getpid()}"
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / DEPLOY_NAME


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
