"""`cvtune optimize MODEL --task T --data DIR -o OUT`: search every technique together for the fastest
configuration within the accuracy budget; resumable; exports OUT/best and writes OUT/report.html."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from ..console import console, err_console
from ..errors import UsageError
from ..search import OBJECTIVES, Budget, OptimizeConfig, OptimizeResult, SpaceConfig, optimize, parse_duration
from ..search.records import Trial
from ..search.space import SPACE_PRESETS, space_preset
from ._options import JSON, TASK_OPTION, max_drop_option, parse_task_options, print_json, time_option


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
                       test_hook: str | None = None) -> SpaceConfig:
    """The preset's SpaceConfig with the CLI's comma-separated lists replacing its fields where given. For the
    throughput objective, batches 1,4 and 1..all-cores instances are tried unless given."""
    from ..passes import ChannelPrune, Simplify
    from ..search.space import default_threads, slot_choices

    settings: dict[str, Any] = {}
    if objective == "throughput":
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
    space = space_preset(preset, **settings)
    if prune is not None:
        _floats(prune, "prune")  # numbers only
        like = next((p for p in space.slot_values("prune") if p is not None), ChannelPrune())
        space = space.with_slot("prune", slot_choices("prune", prune, like=like))
    if quant is not None:
        space = space.with_slot("precision", slot_choices("precision", quant))
    if simplify is not None:
        space = space.with_slot("simplify", (None, Simplify()) if simplify else (None,))
    return space


class LiveDisplay:
    """Trials done, best so far and time left, redrawn as events arrive (one line per trial when not a TTY)."""

    def __init__(self, config: OptimizeConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.phase = "starting"
        self.done = self.total = self.failed = 0
        self.baseline: Trial | None = None
        self.best: Trial | None = None
        self.last = ""
        self.live: Live | None = None

    def __call__(self, kind: str, **data: Any) -> None:
        if kind == "space":
            err_console.print(f"search space: {data['size']} candidates ({data['strategy']})", highlight=False)
        elif kind == "start" and data.get("resumed"):
            err_console.print(f"resuming the search in {self.config.out}", highlight=False)
        elif kind == "progress":
            self.phase, self.done, self.total = data["phase"], data["done"], data["total"]
        elif kind == "build":
            self.last = f"building model: {data['label']}"
        elif kind == "trial_start":
            self.last = f"{data['rung']}: {data['candidate'].label()}"
        elif kind == "trial_done":
            self._trial(data["trial"])
        elif kind == "baseline":
            self.baseline = data["trial"]
        if self.live is not None:
            self.live.update(self.render())

    def _trial(self, trial: Trial) -> None:
        self.failed += not trial.ok
        if not err_console.is_terminal:
            what = f"p50 {trial.p50_ms:.1f} ms, {_metric(trial)}" if trial.measured else \
                (f"{trial.status}: {trial.error}" if not trial.ok else f"p50 {trial.p50_ms:.1f} ms")
            err_console.print(f"[{trial.rung}] {trial.label}: {what}", highlight=False, markup=False)
        base = self.baseline
        if not trial.measured or base is None or base.metric is None or trial.rung != "screen" or \
                trial.key == base.key:
            return
        if self.config.budget.allows(base.metric.value, trial.metric.value) and \
                (self.best is None or trial.p50_ms < self.best.p50_ms):  # type: ignore[operator]
            self.best = trial

    def render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        left = ""
        if self.config.time_budget_s:
            remaining = max(0.0, self.config.time_budget_s - (time.monotonic() - self.started))
            left = f", {remaining:.0f} s left of {self.config.time_budget_s:.0f} s"
        table.add_row("phase", f"{self.phase}: {self.done}/{self.total or '?'} ({self.failed} failed){left}")
        if self.baseline and self.baseline.measured:
            table.add_row("baseline", f"{self.baseline.label}: p50 {self.baseline.p50_ms:.1f} ms, "
                                      f"{_metric(self.baseline)}")
        if self.best and self.baseline:
            speed = self.baseline.p50_ms / self.best.p50_ms  # type: ignore[operator]
            table.add_row("best so far", f"{self.best.label}: p50 {self.best.p50_ms:.1f} ms ({speed:.2f}x, "
                                         f"screening), {_metric(self.best)}")
        table.add_row("now", self.last)
        return table


def _metric(trial: Trial) -> str:
    return "no metric" if trial.metric is None else f"{trial.metric.name} {trial.metric.value:.4f}"


def print_summary(result: OptimizeResult) -> None:
    from ..search import get_objective

    objective = get_objective(result.objective)
    base, best = result.baseline, result.best
    table = Table(title=f"cvtune optimize: {objective.name}")
    columns = ("", "configuration", "p50 ms", "images/s", "size MB", "metric", objective.gain_label, "drop")
    for col in columns:
        table.add_column(col, justify="left" if col in ("", "configuration") else "right")

    def cells(trial: Trial, final: Trial | None) -> list[str]:
        timing = (final or trial).timing
        return [f"{timing.p50_ms:.2f}" if timing else "n/a", f"{timing.throughput_ips:.1f}" if timing else "n/a",
                f"{(trial.size_bytes or 0) / 1e6:.2f}", _metric(trial)]

    if base:
        table.add_row("baseline", base.label, *cells(base, result.baseline_final), "1.00x", "")
    if best:
        table.add_row("chosen", best.label, *cells(best, result.best_final),
                      f"{result.gain:.2f}x" if result.gain else "n/a",
                      result.budget.describe(result.drop) if result.drop is not None else "n/a")
    console.print(table)
    if best is None:
        console.print("[bold red]No candidate could be measured on the full evaluation split.[/]")
    elif result.met_budget:
        console.print(f"[green]Within the budget[/] (at most {result.budget.describe()} drop).")
    else:
        console.print(f"[bold red]No candidate met the budget[/] (at most {result.budget.describe()} drop); "
                      f"the closest is shown.")
    if result.stopped_early:
        console.print(f"Stopped early: {result.stopped_early}.", highlight=False)
    for note in result.notes:
        console.print(f"Note: {note}", highlight=False)
    console.print(f"{result.n_trials} trials ({result.n_failed} failed or ruled out) over {result.n_candidates} "
                  f"candidates in {result.seconds:.0f} s.", highlight=False)
    if result.exported:
        console.print(f"Exported: {result.exported.parent}/ (model.onnx, deploy.json)", highlight=False)
    console.print(f"Report: {result.report}", highlight=False)


def run_optimize(config: OptimizeConfig, *, live: bool) -> OptimizeResult:
    """Run the search with the live display, then write the report (the search itself returns data only)."""
    from ..report import write_report

    display = LiveDisplay(config)
    if live and err_console.is_terminal:
        with Live(display.render(), console=err_console, refresh_per_second=2, transient=True) as panel:
            display.live = panel
            result = optimize(config, on_event=display)
    else:
        result = optimize(config, on_event=display)
    result.report = write_report(config.out)
    return result


def register(app: typer.Typer) -> None:
    @app.command("optimize")
    def optimize_cmd(
        model: Path = typer.Argument(..., help="ONNX model to optimize (never modified)."),
        task: str = typer.Option(..., "--task", "-T", help="Task whose metric is the accuracy: textdet, ocr, "
                                 "classify, detect, fidelity."),
        data: Path = typer.Option(..., "--data", "-d", help="Labelled data for the task (split into disjoint "
                                  "calibration and evaluation sets)."),
        out: Path = typer.Option(..., "--output", "-o", help="Output folder: new, empty, or a previous run to "
                                 "resume."),
        kind: str = typer.Option(None, "--kind", help="Dataset layout when it cannot be detected."),
        max_drop: str = max_drop_option("1%"),
        objective: str = typer.Option("latency", "--objective", help=f"What to optimize: {', '.join(OBJECTIVES)}."),
        time_limit: str = time_option(None),
        preset: str = typer.Option("default", "--preset", help=f"Search space: {', '.join(SPACE_PRESETS)} (quick: "
                                   "runtime, resolution and pruning only). The options below override it."),
        runtimes: str = typer.Option(None, "--runtimes", help="Runtimes to search, comma-separated (default: "
                                     "opencv,ort)."),
        threads: str = typer.Option(None, "--threads", help="Thread counts to try, e.g. 1,2 (default: 1 and "
                                    "all physical cores)."),
        scales: str = typer.Option(None, "--scales", help="Input resolution scales to try, e.g. 1,0.75,0.5."),
        prune: str = typer.Option(None, "--prune", help="Channel pruning ratios to try, e.g. 0,0.25."),
        quant: str = typer.Option(None, "--quant", help="Precisions to try, e.g. none,int8-qoperator,int8-qdq,"
                                  "int8-dynamic,fp16."),
        simplify: bool = typer.Option(None, "--simplify/--no-simplify", help="Also try onnxslim simplification."),
        batch: str = typer.Option(None, "--batch", help="Batch sizes to try (throughput objective: 1,4)."),
        instances: str = typer.Option(None, "--instances", help="Parallel sessions (processes) to try, e.g. 1,2 "
                                      "(throughput objective: 1 and all cores)."),
        screen_images: int = typer.Option(16, "--screen-images", min=1, help="Evaluation images per screening trial."),
        eval_images: int = typer.Option(None, "--eval-images", min=1, help="Cap on the full evaluation split."),
        max_trials: int = typer.Option(None, "--max-trials", min=1, help="Cap on screened candidates."),
        seed: int = typer.Option(0, "--seed", help="Seed of the data split and the search order."),
        task_option: list[str] = TASK_OPTION,
        force: bool = typer.Option(False, "--force", help="Start over: remove what a previous run wrote into -o "
                                   "(its store, models, reports; nothing else) instead of resuming it."),
        as_json: bool = JSON,
        test_hook: str = typer.Option(None, "--test-hook", hidden=True),
    ) -> None:
        """Find the fastest configuration (runtime, threads, input size, pruning, quantization, simplification)
        whose metric stays within --max-drop of the model as given run with OpenCV's defaults. Every trial runs in
        a child process and is saved in OUT/trials.sqlite: run the same command again to resume."""
        space = build_space_config(preset=preset, runtimes=runtimes, threads=threads, scales=scales, prune=prune,
                                   quant=quant, simplify=simplify, batches=batch, instances=instances,
                                   objective=objective, test_hook=test_hook)
        config = OptimizeConfig(model=model, task=task, data=data, out=out, data_kind=kind,
                                task_options=parse_task_options(task_option), budget=Budget.parse(max_drop),
                                objective=objective, time_budget_s=parse_duration(time_limit), seed=seed, space=space,
                                screen_images=screen_images, eval_images=eval_images, max_trials=max_trials)
        from ..files import output_lock
        from ..search.store import check_out_dir, clear_out_dir

        check_out_dir(out)  # the whole config is valid: now, and only now, OUT may be touched
        if force and out.is_dir():
            with output_lock(out, folder=True):  # never clears a folder another search is writing
                clear_out_dir(out)
        try:
            result = run_optimize(config, live=not as_json)
        except KeyboardInterrupt:
            argv = sys.argv if Path(sys.argv[0]).name == "cvtune" else None  # the exact command, when we have it
            again = shlex.join(["cvtune", *argv[1:]]) if argv else config.resume_command()
            err_console.print(f"Stopped. Finished trials are saved in {out / 'trials.sqlite'}; resume with:\n  "
                              f"{again}", highlight=False, markup=False)
            raise typer.Exit(130) from None
        if as_json:
            print_json("optimize", result.to_dict())
            return
        print_summary(result)
