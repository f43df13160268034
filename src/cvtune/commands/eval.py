"""`cvtune eval MODEL --task T --data DIR`: accuracy of one model with one runtime, with a 95% bootstrap CI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..console import console, err_console
from ._options import (
    JSON,
    LIMIT,
    PREPROCESS,
    TASK_OPTION,
    TASK_PLUGIN,
    apply_task_plugin,
    parse_task_options,
    print_json,
    warn_if_guessed,
)

# details that are counts (printed as integers); every other detail is a rate printed with 4 decimals
COUNT_KEYS = {"true_positives", "predictions", "gt_boxes", "gt_lines", "correct_lines", "lines", "detections"}


def _runtime_settings(engine: str | None, threads: int | None) -> dict[str, Any]:
    """Only the settings the user gave, so a runtime without engines (ort) rejects --engine by name."""
    return {k: v for k, v in {"engine": engine, "threads": threads}.items() if v is not None}


def register(app: typer.Typer) -> None:
    from ..runtimes import RUNTIMES
    from ..tasks import TASKS

    @app.command("eval")
    def eval_command(
        model: Path = typer.Argument(..., help="Model file (.onnx), e.g. $(cvtune zoo path ppocr-det)."),
        data: Path = typer.Option(..., "--data", "-d", help="Dataset folder or labels/annotation file."),
        task: str = typer.Option(None, "--task", "-t",
                                 help=f"Task: {', '.join(TASKS)} (default: the zoo model's task)."),
        kind: str = typer.Option(None, "--kind", help="Dataset layout: images, classification, coco, icdar, "
                                                      "ocr_lines (default: detected)."),
        runtime: str = typer.Option("opencv", "--runtime", "-r", help=f"Runtime: {', '.join(RUNTIMES)}."),
        engine: str = typer.Option(None, "--engine", help="OpenCV engine: new, classic or auto."),
        threads: int = typer.Option(None, "--threads", min=1, help="Inference threads (default: the runtime's)."),
        limit: int = LIMIT,
        input_size: str = typer.Option(None, "--input-size", help="Fixed network input HEIGHTxWIDTH, e.g. 640x640."),
        reference: Path = typer.Option(None, "--reference", help="fidelity: the original model to compare with."),
        decoder: str = typer.Option(None, "--decoder", help="detect: output decoder (yolo or boxes)."),
        task_option: list[str] = TASK_OPTION,
        task_plugin: Path = TASK_PLUGIN,
        preprocess: str = PREPROCESS,
        as_json: bool = JSON,
    ) -> None:
        """Measure a model's accuracy on a labelled dataset (or its fidelity to a reference model on any images):
        the headline metric with its 95% bootstrap CI, details, and how many images were used and skipped."""
        from .. import zoo
        from ..errors import UsageError
        from ..evaluate import evaluate, load_eval_dataset
        from ..model import check_model_file
        from ..runtimes import make_runtime
        from ..tasks.spec import resolve_task

        options: dict[str, Any] = parse_task_options(task_option)
        task = apply_task_plugin(task_plugin, task, options)
        if task is None:
            entry = zoo.find_by_path(model)
            if entry is None:
                raise UsageError(f"say which task to evaluate {model} on: --task {' | '.join(TASKS)}")
            task = entry.task
        if input_size:
            options["input_size"] = input_size
        if reference:
            options["reference_model"] = reference
        if decoder:
            options["decoder"] = decoder
        rt = make_runtime(runtime, **_runtime_settings(engine, threads))
        check_model_file(model)
        spec = resolve_task(task, model, preprocess=preprocess, **options)
        pre = spec.preprocessing
        warn_if_guessed(pre, model, preprocess)
        dataset = load_eval_dataset(data, kind)
        task_obj = spec.build()
        task_obj.bind(dataset)
        helpers = task_obj.aux_models() if hasattr(task_obj, "aux_models") else {}  # e.g. ocr's detector
        if helpers and not as_json:
            err_console.print(f"{task} uses: " + "; ".join(f"{k} {v}" for k, v in helpers.items()) + " (choose with "
                              f"--task-option {' '.join(f'{k}=...' for k in helpers)})", highlight=False,
                              markup=False, soft_wrap=True)
        start = time.perf_counter()
        metrics = evaluate(model, rt, task_obj, dataset, limit=limit, progress=not as_json)
        elapsed = time.perf_counter() - start
        result = {**metrics.to_dict(), "model": str(model), "data": str(data), "runtime": rt.to_dict(),
                  "preprocessing": pre.to_string() if pre else None, "preprocessing_source": spec.preprocessing_source,
                  "seconds": round(elapsed, 3), **({"helper_models": helpers} if helpers else {})}
        if as_json:
            print_json("eval", result)
            return
        table = Table(title=f"{metrics.task} on {data}", show_header=False)
        ci = (f"[{metrics.ci_low:.4f}, {metrics.ci_high:.4f}]" if metrics.ci_low is not None
              and metrics.ci_high is not None else "n/a")
        table.add_row(f"[bold]{metrics.name}[/]", f"[bold]{metrics.value:.4f}[/]  95% CI {ci}")
        for key, value in metrics.details.items():
            table.add_row(key, f"{value:g}" if key in COUNT_KEYS else f"{value:.4f}")
        table.add_row("images", f"{metrics.n_images} used, {metrics.n_skipped} skipped")
        table.add_row("model", str(model))
        table.add_row("runtime", rt.label())
        if pre is not None:
            table.add_row("preprocessing", f"{pre.source}: {pre.to_string()}")
        for name, used in helpers.items():
            table.add_row(name, used)
        table.add_row("time", f"{elapsed:.1f} s")
        console.print(table)
