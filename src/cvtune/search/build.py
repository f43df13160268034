"""Build the model file a candidate's passes produce, once per model key, in a child process (a pass that crashes
fails its candidates, not the search). The passes come from the registry (cvtune.passes) and take their
calibration images from one stream: the calibration split through the task's own preprocessing."""

from __future__ import annotations

import shutil
import time
import zlib
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..files import model_files, model_present
from ..isolate import run_isolated


def _build_child(source: str, output: str, passes: list[dict[str, Any]], static_size: list[int] | None,
                 calib_images: list[str], task: dict[str, Any], input_shape: list[int], workdir: str
                 ) -> dict[str, Any]:
    """Runs in a child: apply the passes, save atomically, return facts about the result."""
    from ..data.calibration import CalibrationNeed, CalibrationSet, calibration_set
    from ..model import load_onnx
    from ..passes import BuildContext, apply_passes, pass_from_dict, save_built
    from ..passes.build import ARTIFACT
    from ..tasks.spec import TaskSpec

    started = time.perf_counter()
    proto = load_onnx(source)
    spec = TaskSpec.from_dict(task)
    shape = tuple(input_shape) if static_size else None  # the static model's own input shape (its layout)
    sets: dict[CalibrationNeed, CalibrationSet] = {}

    def calibration(need: CalibrationNeed) -> CalibrationSet:
        """The one calibration stream: the calibration split through the task's own preprocessing."""
        if not calib_images:
            raise ModelError("this technique needs calibration images, and the calibration split has none")
        if need not in sets:
            sets[need] = calibration_set(source, calib_images, need, task=spec, input_shape=shape)
        return sets[need]

    ctx = BuildContext(tuple(input_shape), Path(workdir), calibration,
                       tuple(static_size) if static_size else None)  # type: ignore[arg-type]
    proto, info = apply_passes(proto, [pass_from_dict(p) for p in passes], ctx, preprocessing=spec.preprocessing)
    save_built(proto, info, output)
    for facts in info.values():  # the scratch file it names is gone once the build ends
        facts.pop(ARTIFACT, None)
    return {"passes": info, "seconds": time.perf_counter() - started}


def model_file_facts(path: str | Path) -> dict[str, int]:
    """File size and deflate-compressed size (what the size objective minimizes: what you would ship), of the model
    file with the files it needs beside it (an OpenVINO IR's .xml and .bin)."""
    files = [p.read_bytes() for p in model_files(path)]
    return {"file_bytes": sum(len(d) for d in files), "compressed_bytes": sum(len(zlib.compress(d, 6)) for d in files)}


def build_model(source: str | Path, output: str | Path, passes: list[dict[str, Any]], *,
                static_size: list[int] | None, calib_images: list[str], task: dict[str, Any],
                input_shape: list[int], timeout: float, memory_limit_mb: int | None) -> dict[str, Any]:
    """Build one transformed model into `output` (its suffix: passes.output_suffix of the passes) in a child
    process. Raises TrialFailed/CvtuneError on failure."""
    output = Path(output)
    workdir = output.parent / f".work-{output.stem}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        info = run_isolated("cvtune.search.build:_build_child",
                            {"source": str(source), "output": str(output), "passes": passes,
                             "static_size": static_size, "calib_images": calib_images, "task": task,
                             "input_shape": input_shape, "workdir": str(workdir)},
                            timeout=timeout, memory_limit_mb=memory_limit_mb)
    finally:  # a pass's scratch files (NNCF writes an ONNX copy and the IR there)
        shutil.rmtree(workdir, ignore_errors=True)
    if not model_present(output):
        raise ModelError(f"building {output.name} produced no file (or not all of its files)")
    return {**info, **model_file_facts(output)}
