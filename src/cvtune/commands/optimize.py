"""`cvtune optimize MODEL --task T --data DIR -o OUT`: search every technique together for the fastest
configuration within the accuracy budget; resumable; exports OUT/best and writes OUT/report.html."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from ..console import console, err_console
from ..errors import UsageError
from ..search import OBJECTIVES, OptimizeConfig, OptimizeResult, SpaceConfig, optimize
from ..search.measure import Incumbent, Outcome
from ..search.records import Trial
from ..search.space import SPACE_PRESETS, space_preset
from ._options import (
    JSON,
    PREPROCESS,
    TASK_OPTION,
    TASK_PLUGIN,
    apply_task_plugin,
    max_drop_option,
    parse_task_options,
    print_json,
    time_option,
)


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--{what} takes comma-separated numbers, e.g. 1,0.75,0.5 (got '{text}')") from None


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    values = _floats(text, what)
    if values is None:
        return None
    if any(v != int(v) or v < 1 for v in values):
        raise UsageError(f"--{what} takes comma-separated positive integers (got '{text}')")
    return tuple(int(v) for v in values)


def build_space_config(*, preset: str, runtimes: str | None, threads: str | None, scales: str | None,
                       prune: str | None, quant: str | None, simplify: bool | None, batches: str | None,
                       instances: str | None = None, objective: str = "latency",
                       test_hook: str | None = None, base: SpaceConfig | None = None) -> SpaceConfig:
    """The preset's SpaceConfig (or `base`, a config file's space) with the CLI's comma-separated lists replacing
    its fields where given. For the throughput objective, batches 1,4 and 1..all-cores instances are tried unless
    given (or the base says)."""
    from ..passes import ChannelPrune, Simplify
    from ..search.space import default_threads, slot_choices

    settings: dict[str, Any] = {}
    if objective == "throughput" and base is None:
        settings.update(batches=(1, 4), instances=tuple(sorted({1, max(default_threads())})))
    if instances is not None:
        settings["instances"] = _ints(instances, "instances")
    if runtimes is not None:
        settings["runtimes"] = tuple(r.strip() for r in runtimes.split(",") if r.strip())
    for name, value in (("threads", _ints(threads, "threads")), ("input_scales", _floats(scales, "scales")),
                        ("batches", _ints(batches, "batch"))):
        if value is not None:
            settings[name] = value
    if test_hook:
        settings["debug"] = (test_hook,)
    space = replace(base, **settings) if base is not None else space_preset(preset, **settings)
    if prune is not None:
        _floats(prune, "prune")  # numbers only
        # numbers are uniform pruning ratios, with the settings of the preset's uniform pruning if it has one
        like = next((p for p in space.slot_values("prune") if hasattr(p, "ratio")),
                    ChannelPrune(importance="activation"))
        space = space.with_slot("prune", slot_choices("prune", prune, like=like))
    if quant is not None:
        space = space.with_slot("precision", slot_choices("precision", quant))
    if simplify is not None:
        space = space.with_slot("simplify", (None, Simplify()) if simplify else (None,))
    return space


class LiveDisplay:
    """The search as it goes: the baseline, the candidate being measured and why, the best answer so far and the
    time left; redrawn as events arrive, or one plain line per event when stderr is not a terminal."""

    def __init__(self, config: OptimizeConfig, *, explain: bool = False) -> None:
        self.config = config
        self.explain = explain
        self.started = time.monotonic()
        self.now = "loading the model and the data"
        self.done = self.total = self.failed = 0
        self.baseline: Trial | None = None
        self.best: Incumbent | None = None
        self.live: Live | None = None

    def _say(self, text: str) -> None:
        if not err_console.is_terminal or self.live is None:
            err_console.print(text, highlight=False, markup=False, soft_wrap=True)

    def __call__(self, kind: str, **data: Any) -> None:
        if kind == "start":
            self.now = "measuring the model as given (the baseline)"
            self._say(self._resumed(data) if data.get("resumed") else f"{self.now} ...")
        elif kind == "space":
            self.total = data.get("candidates", data["size"])
            self._say(f"search space: {self.total} candidates besides the model as given, order: "
                      f"{data['strategy']}")
        elif kind == "build":
            self.now = f"building: {data['label']}"
        elif kind == "trial_start":
            self.now = f"{data['rung']}: {data['candidate'].label()}"
        elif kind == "baseline":
            self.baseline = data["accuracy"].with_(timing=data["timing"].timing)
            self._say(f"baseline {self.baseline.label}: p50 {data['timing'].p50_ms:.1f} ms, "
                      f"{_metric(data['accuracy'])}")
        elif kind == "candidate":
            self.now = f"{data['candidate'].label()}"
            if self.explain:
                self._say(f"next: {data['candidate'].label()}: {data['why']}")
        elif kind == "outcome":
            self._outcome(data["outcome"])
        elif kind == "best":
            self.best = data["incumbent"]
            if self.best.gain > 1:
                self._say(f"new best: {self.best.candidate.label()}, {self.best.gain:.2f}x the baseline")
        if self.live is not None:
            self.live.update(self.render())

    def _outcome(self, outcome: Outcome) -> None:
        self.done += 1
        self.failed += not outcome.ok
        if not outcome.ok:
            failed = outcome.accuracy if outcome.accuracy is not None and not outcome.accuracy.ok else outcome.timing
            what = f"{failed.status}: {failed.error}"
        else:
            gain = f"{outcome.gain:.2f}x" if outcome.gain else "n/a"
            drop = f", drop {self.config.budget.describe(outcome.drop.drop)} on {outcome.drop.n} images" \
                if outcome.drop is not None else ""
            what = f"{gain}{drop}: {outcome.verdict}" + (" -> new best" if outcome.promoted else "")
        self._say(f"[{self.done}/{self.total}] {outcome.candidate.label()}: {what}")

    def _resumed(self, data: dict[str, Any]) -> str:
        """What a resumed run inherits: the budget already used (when the search says) or the trials kept."""
        budget = self.config.time_budget_s
        used = data.get("budget_used_s")
        if used is not None and budget:
            return f"resuming: {used:.0f} s of the {budget:.0f} s budget were used before (in {self.config.out})"
        from ..search.store import Store

        with Store.open(self.config.out, create=False) as store:
            stages = [t for t in store.trials() if t.rung != "result"]
            candidates = len({t.key for t in stages})
        spent = sum(t.seconds for t in stages)
        text = f"resuming the search in {self.config.out}: {candidates} candidates ({len(stages)} stages, " \
               f"{spent:.0f} s of measuring) were done before and are not measured again"
        return text + (f"; this run has its own {budget:.0f} s budget" if budget else "")

    def render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        left = ""
        if self.config.time_budget_s:
            remaining = max(0.0, self.config.time_budget_s - (time.monotonic() - self.started))
            left = f", {remaining:.0f} s left of {self.config.time_budget_s:.0f} s"
        table.add_row("measured", f"{self.done}/{self.total or '?'} candidates ({self.failed} failed){left}")
        if self.baseline is not None and self.baseline.timing is not None:
            table.add_row("baseline", f"{self.baseline.label}: p50 {self.baseline.p50_ms:.1f} ms, "
                                      f"{_metric(self.baseline)}")
        if self.best is not None:
            table.add_row("best so far", f"{self.best.candidate.label()}: {self.best.gain:.2f}x the baseline")
        table.add_row("now", self.now)
        return table


_STAGES = {"screen": "screening images", "full": "whole evaluation split"}


def _metric(trial: Trial, claim: dict | None = None) -> str:
    """The metric with the images it was measured on; an answer's re-measurement through deploy.json when that
    covered more images than the search's own (an answer that settled on a first chunk of 8 images)."""
    if trial.metric is None:
        return "no metric"
    value, n, how = trial.metric.value, trial.metric.n_images, ""
    if _remeasured_on_more(trial, claim):
        value, n, how = float(claim["remeasured"]), int(claim["remeasured_images"]), ", re-measured"  # type: ignore
    return f"{trial.metric.name} {value:.4f} ({n} img{how})" if n else f"{trial.metric.name} {value:.4f}"


def _remeasured_on_more(trial: Trial, claim: dict | None) -> bool:
    """Did the claim check re-measure the answer on more images than the search's own verdict used?"""
    n = trial.metric.n_images if trial.metric is not None else 0
    return bool(claim) and claim.get("remeasured") is not None and (claim.get("remeasured_images") or 0) > (n or 0)


def print_summary(result: OptimizeResult) -> None:
    from ..report import units
    from ..search import get_objective

    objective = get_objective(result.objective)
    base, best = result.baseline, result.best
    table = Table(title=f"cvtune optimize: {objective.name}")
    columns = ("", "configuration", "p50 ms", "images/s", "size MB", "metric", objective.gain_label,
               "change")  # metric change vs baseline, positive = better: the report's sign convention
    for col in columns:
        table.add_column(col, justify="left" if col in ("", "configuration") else "right")

    def cells(trial: Trial, final: Trial | None, claim: dict | None = None) -> list[str]:
        timing = (final or trial).timing
        return [f"{timing.p50_ms:.2f}" if timing else "n/a", f"{timing.throughput_ips:.1f}" if timing else "n/a",
                f"{(trial.size_bytes or 0) / 1e6:.2f}", _metric(trial, claim)]

    if base:
        table.add_row("baseline", base.label, *cells(base, result.baseline_final), "1.00x", "")
    if best and result.improved:
        # the change on the same images as the metric shown: the claim's re-measurement when it covered more
        drop = result.claim["drop"] if _remeasured_on_more(best, result.claim) and result.claim.get("drop") \
            is not None else result.drop
        table.add_row("answer", best.label, *cells(best, result.best_final, result.claim),
                      f"{result.gain:.2f}x" if result.gain else "n/a",
                      units.change(-drop, result.budget) if drop is not None else "n/a")
    console.print(table)
    claim = result.claim or {}
    if result.improved:
        console.print(f"[green]Within the budget[/] (at most {result.budget.describe()} drop), re-measured through "
                      f"deploy.json: {claim.get('remeasured', float('nan')):.4f} on {claim.get('remeasured_images')} "
                      f"images (claimed {claim.get('claimed', float('nan')):.4f}).")
    else:
        console.print("[bold]Nothing beat the model as given[/] within the budget and the time: the answer is the "
                      "model as given (exit code 3).")
    if result.stopped_early:
        console.print(f"Stopped early: {result.stopped_early}.", highlight=False)
    for note in result.notes:
        console.print(f"Note: {note}", highlight=False)
    console.print(f"{result.n_trials - 1} of {result.n_candidates - 1} candidates measured "
                  f"({result.n_failed} failed or ruled out) in {result.seconds:.0f} s.", highlight=False)
    if result.exported and result.exported.is_file():
        files = sorted(p.name for p in result.exported.parent.glob("model.*"))
        console.print(f"Exported: {result.exported.parent}/ ({', '.join([*files, 'deploy.json'])})", highlight=False)
    if result.report:
        console.print(f"Report: {result.report}", highlight=False)


def run_optimize(config: OptimizeConfig, *, live: bool, explain: bool = False) -> OptimizeResult:
    """Run the search with the live display, then write the report (the search itself returns data only)."""
    from ..report import write_report

    display = LiveDisplay(config, explain=explain)
    if live and err_console.is_terminal:
        with Live(display.render(), console=err_console, refresh_per_second=2, transient=True) as panel:
            display.live = panel
            result = optimize(config, on_event=display)
    else:
        result = optimize(config, on_event=display)
    result.report = write_report(config.out)
    return result


# CLI parameter -> OptimizeConfig field, and the parameters that shape the search space
PARAM_FIELDS = {"model": "model", "task": "task", "data": "data", "out": "out", "kind": "data_kind",
                "max_drop": "budget", "objective": "objective", "time_limit": "time_budget_s", "seed": "seed",
                "eval_images": "eval_images", "max_trials": "max_trials", "task_option": "task_options",
                "preprocess": "preprocess", "strategy": "strategy", "workers": "eval_workers", "ray": "ray",
                "ray_address": "ray_address"}
SPACE_PARAMS = ("preset", "runtimes", "threads", "scales", "prune", "quant", "simplify", "batch", "instances",
                "test_hook")


def resolve_config(ctx: typer.Context, config_file: Path | None, fields: dict[str, Any],
                   space_args: dict[str, Any]) -> OptimizeConfig:
    """The run's config: the command line alone, or a --config file with the options given on the command line
    replacing its fields (their paths read against the working directory, the file's against its folder)."""
    from ..search.config_file import config_from_dict, load_config, read_config

    if config_file is None:
        return replace(config_from_dict(fields, where="command line"), space=build_space_config(**space_args))
    # by name: typer vendors its own click, whose ParameterSource is another enum than click's
    given = {p for p in ctx.params if getattr(ctx.get_parameter_source(p), "name", "") == "COMMANDLINE"}
    overrides = {field: fields[field] for param, field in PARAM_FIELDS.items() if param in given}
    for name in ("model", "data", "out"):
        if name in overrides and not str(overrides[name]).startswith("zoo:"):
            overrides[name] = Path(overrides[name]).resolve()
    if "task_options" in overrides:
        overrides["task_options"] = {**(read_config(config_file).get("task_options") or {}), **fields["task_options"]}
    config = load_config(config_file, **overrides)
    if given & set(SPACE_PARAMS):
        base = None if "preset" in given else config.space
        config = replace(config, space=build_space_config(**space_args, base=base))
    return config


def register(app: typer.Typer) -> None:
    @app.command("optimize")
    def optimize_cmd(
        ctx: typer.Context,
        model: str = typer.Argument(None, help="ONNX model to optimize (never modified), or zoo:NAME."),
        task: str = typer.Option(None, "--task", "-T", help="Task whose metric is the accuracy: textdet, ocr, "
                                 "classify, detect, fidelity, or a --task-plugin's task."),
        data: Path = typer.Option(None, "--data", "-d", help="Labelled data for the task (split into disjoint "
                                  "calibration and evaluation sets)."),
        out: Path = typer.Option(None, "--output", "-o", help="Output folder: new, empty, or a previous run to "
                                 "resume."),
        config_file: Path = typer.Option(None, "--config", help="Read the run from a YAML or JSON file (the fields "
                                         "of --save-config's output); options given here override it."),
        save_config_to: Path = typer.Option(None, "--save-config", help="Write this run's resolved config to FILE "
                                            "(.yaml or .json), to rerun or edit it with --config."),
        kind: str = typer.Option(None, "--kind", help="Dataset layout when it cannot be detected."),
        max_drop: str = max_drop_option("1%"),
        objective: str = typer.Option("latency", "--objective", help=f"What to optimize: {', '.join(OBJECTIVES)}."),
        time_limit: str = time_option(None),
        preset: str = typer.Option("default", "--preset", help=f"Search space: {', '.join(SPACE_PRESETS)} (quick: "
                                   "runtime, resolution and pruning only). The options below override it."),
        runtimes: str = typer.Option(None, "--runtimes", help="Runtimes to search, comma-separated (default: "
                                     "opencv,ort, and openvino where installed)."),
        threads: str = typer.Option(None, "--threads", help="Thread counts to try, e.g. 1,2 (default: 1 and "
                                    "all physical cores)."),
        scales: str = typer.Option(None, "--scales", help="Input resolution scales to try, e.g. 1,0.75,0.5."),
        prune: str = typer.Option(None, "--prune", help="Channel pruning ratios to try, e.g. 0,0.25."),
        quant: str = typer.Option(None, "--quant", help="Precisions to try, e.g. none,int8-qoperator,int8-qdq,"
                                  "int8-dynamic,fp16,nncf-int8 (NNCF's int8 runs on openvino only)."),
        simplify: bool = typer.Option(None, "--simplify/--no-simplify", help="Also try onnxslim simplification."),
        batch: str = typer.Option(None, "--batch", help="Batch sizes to try (throughput objective: 1,4)."),
        instances: str = typer.Option(None, "--instances", help="Parallel sessions (processes) to try, e.g. 1,2 "
                                      "(throughput objective: 1 and all cores)."),
        eval_images: int = typer.Option(None, "--eval-images", "--limit", min=1, help="Cap on the evaluation split "
                                        "(accuracy stops earlier when a candidate is clearly inside or outside the "
                                        "budget)."),
        max_trials: int = typer.Option(None, "--max-trials", min=1, help="Cap on candidates measured."),
        strategy: str = typer.Option("anytime", "--strategy", help="Order candidates are tried in: anytime (the "
                                     "highest expected gain per second first), enumerate, optuna-tpe."),
        workers: int = typer.Option(1, "--workers", help="Child processes evaluating accuracy at once (latency "
                                    "is always timed alone); with --ray, Ray tasks per accuracy stage."),
        ray: bool = typer.Option(False, "--ray", help="Evaluate accuracy as Ray tasks (one per --workers range of "
                                 "images), for evaluation sets too large for one machine; latency is still timed "
                                 "here, alone. Starts a local Ray unless --ray-address is given; the cluster must "
                                 "see the same paths (shared filesystem). Needs: pip install 'cvtune\\[ray]'."),
        ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster for --ray, HOST:PORT or "
                                        "ray://HOST:PORT (implies --ray)."),
        explain: bool = typer.Option(False, "--explain", help="Print why each candidate comes next (the expected "
                                     "gain, probability within budget and cost the order is based on)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the data split and the search order."),
        task_option: list[str] = TASK_OPTION,
        task_plugin: Path = TASK_PLUGIN,
        preprocess: str = PREPROCESS,
        force: bool = typer.Option(False, "--force", help="Start over: remove what a previous run wrote into -o "
                                   "(its store, models, reports; nothing else) instead of resuming it."),
        as_json: bool = JSON,
        test_hook: str = typer.Option(None, "--test-hook", hidden=True),
    ) -> None:
        """Find the fastest configuration (runtime, threads, input size, pruning, quantization, simplification)
        whose metric stays within --max-drop of the model as given run with OpenCV's defaults.

        Anytime: the model as given is measured and exported to OUT/best first; every candidate confirmed faster
        and within the budget replaces it, so OUT/best always holds a valid answer, also when --time runs out.
        The answer is timed back to back against the baseline and re-measured through its own deploy.json.
        Every stage runs in a child process and is saved in OUT/trials.sqlite: run the same command to resume.

        Exit codes: 0 = an answer better than the model as given, within the budget; 3 = nothing beat the model
        as given (OUT/best holds it); 2 = bad input; 130 = interrupted (resume with the same command)."""
        space_args = dict(preset=preset, runtimes=runtimes, threads=threads, scales=scales, prune=prune, quant=quant,
                          simplify=simplify, batches=batch, instances=instances, objective=objective,
                          test_hook=test_hook)
        task_options = parse_task_options(task_option)
        task = apply_task_plugin(task_plugin, task, task_options)
        fields = {"model": model, "task": task, "data": data, "out": out, "data_kind": kind, "budget": max_drop,
                  "objective": objective, "time_budget_s": time_limit, "seed": seed, "eval_images": eval_images,
                  "max_trials": max_trials, "task_options": task_options, "preprocess": preprocess,
                  "strategy": strategy, "eval_workers": workers, "ray": ray or bool(ray_address),
                  "ray_address": ray_address}
        config = resolve_config(ctx, config_file, fields, space_args)
        out = config.out
        if save_config_to is not None:
            from ..search.config_file import save_config

            err_console.print(f"config: {save_config(config, save_config_to)} (rerun with: cvtune optimize "
                              f"--config {save_config_to})", highlight=False, markup=False)
        from ..files import output_lock
        from ..search.store import check_out_dir, clear_out_dir

        check_out_dir(out)  # the whole config is valid: now, and only now, OUT may be touched
        if force and out.is_dir():
            with output_lock(out, folder=True):  # never clears a folder another search is writing
                clear_out_dir(out)
        try:
            result = run_optimize(config, live=not as_json, explain=explain)
        except KeyboardInterrupt:
            argv = sys.argv if Path(sys.argv[0]).name == "cvtune" else None  # the exact command, when we have it
            again = shlex.join(["cvtune", *argv[1:]]) if argv else config.resume_command()
            err_console.print(f"Stopped. Finished trials are saved in {out / 'trials.sqlite'}; resume with:\n  "
                              f"{again}", highlight=False, markup=False)
            raise typer.Exit(130) from None
        if as_json:
            print_json("optimize", result.to_dict())
        else:
            print_summary(result)
        if result.exit_code:
            raise typer.Exit(result.exit_code)
