"""cvtune's Python API: optimize, evaluate, quantize, prune a model, and load what the optimizer exported.

    import cvtune
    result = cvtune.optimize("model.tflite", "photos/", task="fidelity", max_drop="1%", time="3m", out="opt")
    metrics = cvtune.evaluate("model.onnx", "val/", task="classify", runtime="ort")
    cvtune.quantize("model.onnx", "model_int8.onnx", calib="photos/")

Results are typed (OptimizeResult, Metrics, QuantResult, ChannelReport/SparsityReport); every problem is a
cvtune.CvtuneError subclass whose message names the parameter, not a command-line flag. `eval_fn(deployed) ->
float` (higher is better) scores a candidate with the user's own metric and data loader, as INC's eval_fn or
NNCF's validation_fn; a Task subclass (or its file) brings the user's own preprocessing, postprocessing and metric.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .budget import Budget, parse_duration
from .deploy import Deployed, load_deployed
from .errors import CvtuneError, DatasetError, ModelError, UsageError
from .tasks.base import Metrics, Task
from .zoo import Preprocessing

__all__ = ["optimize", "evaluate", "quantize", "prune", "load_deployed", "Deployed", "EvalFn"]

PathLike = str | os.PathLike[str]
EvalFn = Callable[[Deployed], float]
QUANT_METHODS = ("int8", "int8-dynamic", "fp16")


def _task_options(task: str | type[Task] | None, preprocess: Preprocessing | dict | str | None,
                  options: dict[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """A task name and its options from a name, a Task subclass (registered; its file recorded so child processes
    import it) and a preprocessing spec."""
    from .tasks import TASKS
    from .tasks.plugin import PLUGIN_OPTION, plugin_for

    options = dict(options or {})
    if isinstance(task, type):
        if not issubclass(task, Task) or task.name == Task.name:
            raise UsageError(f"task must be a task name or a cvtune.tasks.Task subclass with a `name` (got {task!r})")
        TASKS.setdefault(task.name, task)
        source = plugin_for(task)
        if source:
            options[PLUGIN_OPTION] = source
        task = task.name
    elif task is not None and not isinstance(task, str):
        raise UsageError(f"task must be a task name or a cvtune.tasks.Task subclass (got {type(task).__name__})")
    if preprocess is not None:
        if isinstance(preprocess, dict):
            preprocess = Preprocessing.from_dict(preprocess)
        elif isinstance(preprocess, str | os.PathLike):  # the --preprocess grammar, or a JSON file of it
            from .preprocess import load_preprocess

            preprocess = load_preprocess(preprocess)
        if not isinstance(preprocess, Preprocessing):
            raise UsageError("preprocess must be a cvtune.Preprocessing, its dict (input_size, scale, mean, std, "
                             "rgb, layout) or a spec string such as \"letterbox=640x640,pad=114,scale=1/255,rgb\"")
        options["preprocessing"] = preprocess.to_string()  # the --preprocess grammar: stored, compared on resume
    return task, options


def _default_task(model: Path) -> str:
    from .zoo import find_by_path

    entry = find_by_path(model)
    return entry.task if entry else "fidelity"  # label-free: agreement with the original model


def _model_path(model: PathLike) -> Path:
    from .model import check_model_file

    return check_model_file(model)


def evaluate(model: PathLike, data: PathLike, *, task: str | type[Task], runtime: str | Any = "ort",
             preprocess: Preprocessing | dict | str | None = None, limit: int | None = None,
             options: dict[str, Any] | None = None) -> Metrics:
    """The task's metric (with a bootstrap 95% CI) of `model` run by `runtime` (a name or a Runtime) on the images
    in `data`. A .tflite model runs as it is (OpenCV), or converted to ONNX for ORT/OpenVINO."""
    from .evaluate import evaluate as run_evaluate
    from .model import check_model_file
    from .runtimes import Runtime, make_runtime

    path = check_model_file(model)
    name, task_options = _task_options(task, preprocess, options)
    rt = runtime if isinstance(runtime, Runtime) else make_runtime(str(runtime))
    if path.suffix.lower() != ".onnx" and rt.name != "opencv":
        from .convert import ensure_onnx

        if name == "fidelity":
            task_options.setdefault("reference_model", str(path))
        path = ensure_onnx(path)
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be >= 1 (got {limit})")
    return run_evaluate(path, rt, name, data, limit=limit, progress=False, task_options=task_options)


def optimize(model: PathLike, data: PathLike, *, task: str | type[Task] | None = None,
             preprocess: Preprocessing | dict | str | None = None, max_drop: str | Budget = "1%",
             time: str | float | None = "3m", out: PathLike | None = None, eval_fn: EvalFn | None = None,
             runtimes: Sequence[str] | str | None = None, preset: str = "default", **advanced: Any):
    """Search for the fastest way to run `model` whose metric stays within `max_drop` of the original's, on the
    images in `data` (split into disjoint calibration and evaluation sets), in at most `time` (e.g. "3m", or
    seconds). `task` defaults to the zoo model's task, else "fidelity" (agreement with the original, no labels).
    `out` (default ./<model stem>.cvtune) holds trials.sqlite, best/ (model + deploy.json) and report.html; the
    same call resumes. `eval_fn(deployed) -> float` (higher is better) is the user's own metric: the chosen
    configuration is the fastest within the budget on it: every candidate (and the model as given) is scored with it
    instead of the task's metric. `advanced`: OptimizeConfig fields (task_options such as {"decoder": "blazeface"},
    objective, seed, eval_images, max_trials, calib_images, strategy, eval_workers, ...) and SpaceConfig fields
    (threads, input_scales, batches, instances, ...). Returns an OptimizeResult (exit_code 0 when an
    improvement within the budget was found, 3 when the model as given is the answer)."""
    from .report import write_report
    from .search import OptimizeConfig
    from .search import optimize as run_search
    from .search.space import SpaceConfig, space_preset

    path = _model_path(model)
    if eval_fn is not None and not callable(eval_fn):
        raise UsageError("eval_fn must be a function taking a cvtune.Deployed and returning a float (higher is "
                         "better)")
    name, task_options = _task_options(task if task is not None else _default_task(path), preprocess,
                                       advanced.pop("task_options", None))
    budget = max_drop if isinstance(max_drop, Budget) else Budget.parse(str(max_drop))
    seconds = parse_duration(time) if isinstance(time, str) else (float(time) if time is not None else None)
    config_fields = {f.name for f in dataclasses.fields(OptimizeConfig)}
    space_fields = {f.name for f in dataclasses.fields(SpaceConfig)}
    unknown = sorted(set(advanced) - config_fields - space_fields)
    if unknown:
        raise UsageError(f"optimize() has no setting {', '.join(unknown)}; it takes: "
                         f"{', '.join(sorted((config_fields | space_fields) - {'model', 'task', 'data', 'out'}))}")
    space_settings = {k: v for k, v in advanced.items() if k in space_fields and k not in config_fields}
    if runtimes is not None:
        space_settings["runtimes"] = tuple(r.strip() for r in (runtimes.split(",") if isinstance(runtimes, str)
                                                               else runtimes) if r.strip())
    settings = {k: v for k, v in advanced.items() if k in config_fields}
    settings["eval_fn"] = eval_fn  # None: the task's own metric
    config = OptimizeConfig(model=path, task=name, data=Path(data), out=Path(out or f"{path.stem}.cvtune"),
                            task_options=task_options, budget=budget, time_budget_s=seconds,
                            space=space_preset(preset, **space_settings), **settings)
    result = run_search(config)
    result.report = write_report(config.out)
    return result


def quantize(model: PathLike, output: PathLike, *, method: str = "int8", calib: PathLike | Sequence[PathLike] |
             None = None, calib_size: int | None = None, format: str = "qdq", per_channel: bool = False,
             task: str | type[Task] | None = None, preprocess: Preprocessing | dict | str | None = None,
             exclude: Sequence[str] = (), probe: bool = True):
    """Quantize `model` into `output` (+ OUTPUT.quant.json): method "int8" (static; `calib` images, preprocessed
    by `task` or the model's own preprocessing), "int8-dynamic" (no images) or "fp16". Returns a QuantResult."""
    from .data.calibration import calibration_set
    from .quantize.api import quantize as run_quantize
    from .quantize.config import DynamicConfig, Fp16Config, StaticConfig

    path = _model_path(model)
    if method not in QUANT_METHODS:
        raise UsageError(f"unknown quantization method '{method}'; choose one of: {', '.join(QUANT_METHODS)}")
    config: Any
    if method == "int8":
        config = StaticConfig(format=format, per_channel=per_channel, exclude=tuple(exclude))
    elif method == "int8-dynamic":
        config = DynamicConfig(per_channel=per_channel, exclude=tuple(exclude))
    else:
        config = Fp16Config(exclude=tuple(exclude))
    calibration = None
    if method == "int8":
        if calib is None:
            raise UsageError("static int8 needs calibration images (calib: a folder or a list of image files); "
                             "method='int8-dynamic' needs none")
        name, options = _task_options(task, preprocess, None)
        need = dataclasses.replace(StaticConfig.calibration_need, count=calib_size) if calib_size else \
            StaticConfig.calibration_need
        calibration = calibration_set(path, calib if isinstance(calib, str | os.PathLike) else list(calib), need,
                                      task=name, task_options=options)
    return run_quantize(path, output, config, calibration=calibration, probe=probe)


def prune(model: PathLike, output: PathLike, *, ratio: float | None = None, sparsity: float | None = None,
          method: str | None = None, calib: PathLike | Sequence[PathLike] | None = None,
          calib_size: int | None = None, importance: str | None = None, reconstruct: bool = True,
          task: str | type[Task] | None = None, preprocess: Preprocessing | dict | str | None = None):
    """Prune `model` into `output` (+ OUTPUT.prune.json). `ratio`: structured channel pruning (the kind that makes
    runtimes faster), refit by least squares on `calib` images; `sparsity`: unstructured magnitude pruning (a
    smaller compressed file, no speed-up). Returns a ChannelReport or SparsityReport."""
    from .compress.prune import ChannelConfig, prune_file
    from .compress.sparsify import SparsifyConfig
    from .data.calibration import calibration_set

    path = _model_path(model)
    if (ratio is None) == (sparsity is None):
        raise UsageError("give either ratio (structured channel pruning, e.g. 0.3) or sparsity (unstructured "
                         "magnitude pruning, e.g. 0.5)")
    if ratio is not None:
        config: Any = ChannelConfig(ratio=ratio, importance=importance or ("activation" if calib else "l1"),
                                    reconstruct=reconstruct and calib is not None)
        if reconstruct and calib is None:
            raise UsageError("channel pruning refits the next layers on calibration images: give calib (a folder "
                             "or image files), or reconstruct=False for a plain cut")
    else:
        config = SparsifyConfig(method=method or "magnitude", sparsity=sparsity)
    calibration = None
    if calib is not None:
        name, options = _task_options(task, preprocess, None)
        need = ChannelConfig.calibration_need
        if calib_size:
            need = dataclasses.replace(need, count=calib_size)
        calibration = calibration_set(path, calib if isinstance(calib, str | os.PathLike) else list(calib), need,
                                      task=name, task_options=options)
    return prune_file(path, output, config, calibration=calibration)


__all__ += ["CvtuneError", "DatasetError", "ModelError", "UsageError", "Metrics", "Preprocessing", "Task"]
