"""`cvtune run MODEL|DEPLOY.json --input DIR|VIDEO --out results.jsonl`: batch inference with a resumable JSONL
output, locally (threads, one session each) or on Ray (`--ray`, `--ray-address`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from ..console import console, err_console
from ..deploy import is_deploy_file, load_deployed
from ..pipeline import PredictorSpec, default_task, resolve_workers, run_pipeline, task_names
from ..runtimes.devices import usable_cores
from ._options import (
    ENGINE,
    JSON,
    LIMIT,
    PREPROCESS,
    TARGET,
    TASK_OPTION,
    TASK_PLUGIN,
    THREADS,
    apply_task_plugin,
    build_runtime,
    parse_task_options,
    print_json,
    resolved_target,
    warn_if_guessed,
)


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        model: Path = typer.Argument(..., help="Model file (.onnx, ...) or a deploy.json written by the optimizer."),
        input_path: Path = typer.Option(..., "--input", "-i", help="Folder of images (recursive), one image, or a "
                                        "video file."),
        out: Path = typer.Option(..., "--out", "-o", help="Results, one JSON line per input. If it holds the rows "
                                 "of an earlier run, the run continues after them; any other file is refused."),
        task: str = typer.Option(None, "--task", help="Postprocessing: " + ", ".join(task_names()) + " (default: "
                                 "the deploy.json's or the zoo's task; 'raw' writes the outputs themselves)."),
        option: list[str] = TASK_OPTION,
        task_plugin: Path = TASK_PLUGIN,
        workers: str = typer.Option("auto", "--workers", "-w", help="Inference workers, each with its own session: "
                                    "a number, or 'auto' (the deploy.json's instances, else one per core)."),
        batch: int = typer.Option(None, "--batch", "-b", min=1, help="Images per inference run (default: the "
                                  "deploy.json's, else 1). The model needs a dynamic batch dim."),
        runtime: str = typer.Option(None, "--runtime", "-r", help="Runtime (default: the deploy.json's, else "
                                    "opencv)."),
        engine: str = ENGINE,
        target: str = TARGET,
        threads: int = THREADS,
        fallback: bool = typer.Option(False, "--fallback", help="If the requested target is missing, run on the "
                                      "CPU instead (and say so)."),
        ray: bool = typer.Option(False, "--ray", help="Run on Ray Data (actor pool, one session per actor); "
                                 "starts a local Ray unless --ray-address is given. Needs: pip install "
                                 "'cvtune\\[ray]'."),
        ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster to use, HOST:PORT or "
                                        "ray://HOST:PORT (implies --ray)."),
        preprocess: str = PREPROCESS,
        limit: int = LIMIT,
        verbose: bool = typer.Option(False, "--verbose", help="Show Ray's own log lines (hidden by default)."),
        force: bool = typer.Option(False, "--force", help="Start over: replace an existing --out (when the first "
                                   "new row is written) instead of continuing it."),
        as_json: bool = JSON,
    ) -> None:
        """Predict every image (or video frame) and write one JSON row per input, resumably; corrupt inputs get a
        row with "error" and are skipped."""
        options = parse_task_options(option)
        task = apply_task_plugin(task_plugin, task, options)
        deployed = load_deployed(model) if is_deploy_file(model) else None
        n_workers = resolve_workers(workers, default=deployed.instances if deployed else None)
        if deployed and not (runtime or engine or target):
            rt = dataclasses.replace(deployed.runtime, threads=threads) if threads else deployed.runtime
        else:  # workers x threads = the cores, unless told otherwise
            name = runtime or (deployed.runtime.name if deployed else "opencv")
            rt = build_runtime(name, engine=engine, target=target,
                               threads=threads or max(1, usable_cores() // n_workers))
        rt = resolved_target(rt, fallback)
        if deployed:
            spec = deployed.spec(runtime=rt, batch=batch, task=task, task_options=options)
        else:
            spec = PredictorSpec(model=str(model), runtime=rt.to_dict(), task=task or default_task(model),
                                 task_options=options, batch=batch or 1)
        from ..model import check_model_file, check_model_inputs

        check_model_file(spec.model)
        check_model_inputs(spec.model)
        if preprocess:
            from ..preprocess import resolve_preprocessing

            pre = resolve_preprocessing(spec.model, preprocess)
            spec = dataclasses.replace(spec, preprocessing=pre.to_dict())
        task_obj = spec.build_task()  # resolves the preprocessing (deploy.json, the file, or a guess): say which
        warn_if_guessed(task_obj.preprocessing, spec.model, preprocess)
        task_obj.close()
        use_ray = ray or bool(ray_address)
        err_console.print(f"run: {Path(spec.model).name} with {rt.label()}, task {spec.task}, {n_workers} "
                          f"{'actor' if use_ray else 'worker'}(s), batch {spec.batch} -> {out}", highlight=False)
        result = run_pipeline(spec, input_path, out, workers=n_workers, ray=use_ray, ray_address=ray_address,
                              progress=not as_json, verbose=verbose, limit=limit, force=force)
        if as_json:
            print_json("run", result.to_dict())
            return
        resumed = f", {result.already_done} were already done" if result.already_done else ""
        errors = f", {result.errors} skipped as unreadable (rows with \"error\")" if result.errors else ""
        console.print(f"wrote {result.written} rows to {out} in {result.seconds:.1f} s "
                      f"({result.images_per_s:.1f} images/s){resumed}{errors}", highlight=False)
