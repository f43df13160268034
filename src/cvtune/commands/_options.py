"""Options shared by several commands (runtime selection, output format, calibration, budgets), declared once so
every command spells and reads them the same way, and their parsing."""

from __future__ import annotations

import json
from typing import Any

import typer

from ..errors import UsageError
from ..runtimes import RUNTIMES, Runtime, make_runtime

RUNTIME_HELP = f"Runtime: {', '.join(RUNTIMES)}."


def runtime_option(default: str = "opencv") -> Any:
    return typer.Option(default, "--runtime", "-r", help=RUNTIME_HELP)


ENGINE = typer.Option(None, "--engine", help="OpenCV engine: auto, new, classic (OpenCV 5); 4.x has classic only.")
TARGET = typer.Option(None, "--target", help="OpenCV target: cpu, cpu_fp16, opencl, opencl_fp16, cuda, cuda_fp16.")
THREADS = typer.Option(None, "--threads", "-t", min=1, help="Threads per session (cv2.setNumThreads / ORT intra-op).")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON on stdout instead of tables.")
FORCE = typer.Option(False, "--force", help="Replace an existing output (only once the new one is complete; files "
                     "cvtune did not write are never deleted).")


def input_shape_option(note: str = "") -> Any:
    """`--input-shape NxCxHxW`; `note` says what else this command does with it."""
    return typer.Option(None, "--input-shape", help="Input shape NxCxHxW, e.g. 1x3x640x640 (default: the model's "
                        "own, dynamic dims filled in)." + (f" {note}" if note else ""))


INPUT_SHAPE = input_shape_option("Calibration and evaluation images are resized to it.")
CALIB = typer.Option(None, "--calib", help="Folder of calibration images, like the ones the model will see "
                     "(preprocessed by the task; never the evaluation images).")


def calib_size_option(default: int = 16) -> Any:
    """`--calib-size N`; the default is what the command's technique needs (its CalibrationNeed)."""
    return typer.Option(default, "--calib-size", help="How many calibration images to use (spread evenly over "
                        "the folder).")


CALIB_SIZE = calib_size_option()
LIMIT = typer.Option(None, "--limit", min=1, help="Use only the first N images (quicker, less precise).")
TASK_OPTION = typer.Option(None, "--task-option", "-O", help="Task option KEY=VALUE, repeatable (e.g. "
                           "box_thresh=0.6, reference_model=orig.onnx).")
PREPROCESS = typer.Option(None, "--preprocess", help="How images become the model's input, e.g. "
                          "\"letterbox=640x640,pad=114,scale=1/255,rgb\" (YOLO), \"center_crop=224,resize=256,"
                          "mean=0.485/0.456/0.406,std=0.229/0.224/0.225,rgb\" (ImageNet), a JSON file, or 'guess' to "
                          "accept cvtune's guess. Default: what the model file says (zoo, Ultralytics or cvtune "
                          "metadata, TFLite tensors), else a guess with a warning.")


TASK_PLUGIN = typer.Option(None, "--task-plugin", help="Python file defining a cvtune.tasks.Task subclass "
                           "(preprocess, postprocess, score); its `name` becomes a --task choice (see "
                           "examples/my_task.py).")


def apply_task_plugin(plugin: str | None, task: str | None, options: dict[str, Any]) -> str | None:
    """Load `--task-plugin` now and record it in the task options (child processes import it again); returns the
    task to use: `task`, or the plugin's only task when `task` is not given."""
    if not plugin:
        return task
    from pathlib import Path

    from ..tasks.plugin import PLUGIN_OPTION, load_task_plugin

    names = load_task_plugin(plugin)
    options[PLUGIN_OPTION] = str(Path(plugin).resolve())
    if task is None:
        if len(names) > 1:
            raise UsageError(f"{plugin} defines several tasks ({', '.join(names)}); say which with --task")
        return names[0]
    return task


def max_drop_option(default: str | None = "1%") -> Any:
    """`--max-drop`: the accuracy budget, one grammar on every command (cvtune.budget.Budget)."""
    return typer.Option(default, "--max-drop", help="Largest metric drop allowed: 1% (relative to the reference "
                        "model's metric) or 0.01abs (absolute, in metric units).")


def time_option(default: str | None = None) -> Any:
    """`--time` (alias `--budget`): a wall-clock limit, one grammar on every command (cvtune.budget.parse_duration)."""
    return typer.Option(default, "--time", "--budget", help="Wall-clock limit, e.g. 3m, 90s, 1h30m.")


def warn_if_guessed(spec: Any, model: Any, preprocess: str | None) -> None:
    """The one warning line when images are fed on guessed preprocessing (not when --preprocess guess said so)."""
    from ..console import err_console
    from ..preprocess import ACCEPT_GUESS, guess_warning

    if spec is not None and getattr(spec, "guessed", False) and preprocess != ACCEPT_GUESS:
        err_console.print(f"Warning: {guess_warning(spec, model)}", highlight=False, markup=False, soft_wrap=True)


def print_json(kind: str, obj: Any) -> None:
    """A --json output on stdout. Objects carry `schema` (cvtune-KIND/N) and `version` (cvtune's), like every JSON
    file cvtune writes; lists (several bench configurations, the zoo) stay lists of such rows."""
    from ..files import json_document

    if isinstance(obj, dict):
        obj = json_document(kind, obj)
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def parse_task_options(items: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE items -> a dict: ['thresh=0.4', 'labels=["0","180"]'] -> {'thresh': 0.4, 'labels': ['0', '180']}
    (JSON values, else text)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--task-option takes KEY=VALUE, e.g. box_thresh=0.6 (got {item!r})")
        options[key.strip()] = _coerce(value.strip())
    return options


def build_runtime(name: str, *, engine: str | None = None, target: str | None = None,
                  threads: int | None = None) -> Runtime:
    """A Runtime from the common CLI options; an option the runtime does not have is an error naming it."""
    settings: dict[str, Any] = {"threads": threads}
    if name == "opencv":
        settings.update(engine=engine, target=target)
    elif engine or target:
        raise UsageError(f"--engine/--target are OpenCV options; runtime '{name}' does not take them")
    return make_runtime(name, **settings)


def parse_runtime_spec(spec: str) -> Runtime:
    """'ort', 'opencv:engine=classic,threads=1' -> Runtime. Values: ints, true/false, or strings."""
    name, _, rest = spec.partition(":")
    settings: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"bad runtime spec {spec!r}: expected RUNTIME[:key=value,...], e.g. opencv:engine=classic")
        settings[key.strip()] = _coerce(value.strip())
    return make_runtime(name.strip(), **settings)


def _coerce(value: str) -> Any:
    """A command-line value: JSON where it reads as JSON (0.6, 3, true, ["0","180"]), else the text itself."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return json.loads(value)
    except ValueError:
        return value


def resolved_target(runtime: Runtime, fallback: bool) -> Runtime:
    """The runtime with its target resolved for this machine (runtimes.devices.resolve_target); a missing target
    is one error line that names the --fallback option, a fallback one note line."""
    from ..console import err_console
    from ..errors import RuntimeUnavailable
    from ..runtimes.devices import resolve_target

    try:
        resolved, note = resolve_target(runtime, fallback=fallback)
    except RuntimeUnavailable as exc:
        raise RuntimeUnavailable(f"{exc} (--fallback)") from None
    if note:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    return resolved
