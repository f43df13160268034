"""`cvtune bench MODEL`: latency percentiles, throughput, memory and load time, each configuration in its own
process; `--compare` adds configurations printed side by side with ratios against the first.

Throughput mode (`--instances N`, `--sweep`): sustained images/s and latency under load with N processes of
`--threads` threads each on batches of `--batch`, see cvtune.throughput."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..bench import BenchResult, BenchSettings, measure
from ..console import console, err_console
from ..errors import TrialFailed
from ..model import parse_shape
from ..runtimes.devices import usable_cores
from ..throughput import Layout, ThroughputResult, ThroughputSettings, measure_throughput, sweep
from ._options import (
    ENGINE,
    JSON,
    TARGET,
    THREADS,
    build_runtime,
    input_shape_option,
    parse_runtime_spec,
    print_json,
    resolved_target,
    runtime_option,
)


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_cmd(
        model: Path = typer.Argument(..., help="Model file (.onnx, or .pb/.tflite through OpenCV)."),
        runtime: str = runtime_option(),
        engine: str = ENGINE,
        target: str = TARGET,
        threads: int = THREADS,
        batch: int = typer.Option(1, "--batch", "-b", min=1, help="Images per run (the model needs a dynamic batch "
                                  "dim)."),
        input_shape: str = input_shape_option("The batch dim follows --batch."),
        compare: list[str] = typer.Option(None, "--compare", "-c", help="Another configuration, RUNTIME[:k=v,...], "
                                          "e.g. ort or opencv:engine=classic,threads=1. Repeatable."),
        warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed runs before measuring."),
        min_runs: int = typer.Option(10, "--min-runs", min=1, help="Measure at least this many runs..."),
        min_time: float = typer.Option(1.0, "--min-time", min=0.0, help="...and at least this many seconds."),
        instances: int = typer.Option(None, "--instances", "-n", min=1, help="Throughput mode: this many processes, "
                                      "each with its own session of --threads threads, run at once from a shared "
                                      "start."),
        sweep_layouts: bool = typer.Option(False, "--sweep", help="Throughput mode over the sensible layouts for "
                                           "this machine's cores (1x1, 1xC, Cx1, ..., batched), with ratios."),
        duration: float = typer.Option(3.0, "--duration", min=0.1, help="Throughput mode: seconds of sustained load."),
        fallback: bool = typer.Option(False, "--fallback", help="If the requested target/provider/device is "
                                      "missing, run on the CPU instead (and say so) rather than stop."),
        as_json: bool = JSON,
    ) -> None:
        """Benchmark a model: p50/p90/p99/mean/std latency, images/s, peak RSS, load time, GFLOP/s; or, with
        --instances/--sweep, sustained images/s and latency under load for instances x threads x batch layouts."""
        from ..model import check_model_file

        check_model_file(model)  # missing, a folder, or not the format its suffix says: before any child starts
        shape = parse_shape(input_shape) if input_shape else None
        settings = BenchSettings(warmup=warmup, min_runs=min_runs, min_time_s=min_time)
        runtimes = [build_runtime(runtime, engine=engine, target=target, threads=threads)]
        runtimes += [parse_runtime_spec(spec) for spec in compare or []]
        runtimes = [resolved_target(rt, fallback) for rt in runtimes]
        if instances is not None or sweep_layouts:
            load = ThroughputSettings(duration_s=duration)
            _throughput(model, runtimes, shape, instances=instances, threads=threads, batch=batch,
                        do_sweep=sweep_layouts, settings=load, as_json=as_json)
            return
        def one(rt):
            err_console.print(f"measuring {rt.label()} ...", highlight=False)
            return measure(model, rt, shape, batch=batch, settings=settings)

        results = _collect(runtimes, one, lambda rt: rt.label())
        if as_json:
            _print_json(results)
            return
        print_results(results)


def _collect(configs: list, measure_one, describe) -> list:
    """Measure each configuration; one that fails is reported in its row, unless it is the only one (then the
    error is the command's)."""
    results = []
    for config in configs:
        try:
            results.append(measure_one(config))
        except TrialFailed as exc:
            if len(configs) == 1:
                raise
            results.append(f"{describe(config)}: failed: {exc}")
    return results


def _print_json(results: list) -> None:
    rows = [{"error": r} if isinstance(r, str) else r.to_dict() for r in results]
    print_json("bench", rows[0] if len(rows) == 1 else rows)


def _throughput(model: Path, runtimes: list, shape, *, instances: int | None, threads: int | None, batch: int,
                do_sweep: bool, settings: ThroughputSettings, as_json: bool) -> None:
    if do_sweep:
        results: list[ThroughputResult | str] = []
        for rt in runtimes:
            err_console.print(f"sweeping layouts for {rt.label()} ({settings.duration_s:g} s each) ...",
                              highlight=False)
            results += sweep(model, rt, shape, settings=settings,
                             on_result=lambda r: err_console.print(f"  {_short(r)}", highlight=False))
    else:
        n = 1 if instances is None else instances
        layout = Layout(n, threads if threads is not None else max(1, usable_cores() // max(n, 1)), batch)

        def one(rt):
            err_console.print(f"loading {rt.label()} {layout.label()} for {settings.duration_s:g} s ...",
                              highlight=False)
            return measure_throughput(model, rt, shape, layout=layout, settings=settings)

        results = _collect(runtimes, one, lambda rt: f"{rt.label()} {layout.label()}")
    if as_json:
        _print_json(results)
        return
    print_throughput(results)


def _short(result: ThroughputResult | str) -> str:
    if isinstance(result, str):
        return result
    return f"{result.layout.label()}: {result.images_per_s:.1f} images/s, p50 {result.p50_ms:.2f} ms"


def print_throughput(results: list[ThroughputResult | str]) -> None:
    """One row per layout; ratios against the same runtime's 1 instance x 1 thread x batch 1 (when measured).
    Latencies are per run (one batch) while every instance is busy."""
    ok = [r for r in results if isinstance(r, ThroughputResult)]
    title = (f"cvtune bench (throughput): {Path(ok[0].model).name} at {'x'.join(map(str, ok[0].input_shape[1:]))}"
             if ok else "cvtune bench (throughput)")
    table = Table(title=title)
    for col in ("runtime", "instances x threads", "batch", "images/s", "vs 1x1", "p50 ms", "p90 ms", "p99 ms",
                "mean ms", "runs"):
        table.add_column(col, justify="left" if col == "runtime" else "right")
    base = {}
    for r in ok:
        if r.layout == Layout(1, 1, 1):
            base.setdefault(r.runtime.get("runtime"), r.images_per_s)
    for r in results:
        if isinstance(r, str):
            table.add_row(r, *[""] * 9)
            continue
        ref = base.get(r.runtime.get("runtime"))
        table.add_row(r.label.split(" ")[0], f"{r.layout.instances}x{r.layout.threads}", str(r.layout.batch),
                      f"{r.images_per_s:.1f}", f"{r.images_per_s / ref:.2f}x" if ref else "n/a", f"{r.p50_ms:.2f}",
                      f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.mean_ms:.2f}", str(r.runs))
    console.print(table)


def print_results(results: list[BenchResult | str]) -> None:
    ok = [r for r in results if isinstance(r, BenchResult)]
    base = ok[0] if ok else None
    table = Table(title=f"cvtune bench: {Path(base.model).name} at {'x'.join(map(str, base.input_shape))}"
                  if base else "cvtune bench")
    for col in ("configuration", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "images/s", "speed-up (p50)",
                "load ms", "peak RSS MB", "GFLOP/s", "runs"):
        table.add_column(col, justify="right" if col != "configuration" else "left")
    for r in results:
        if isinstance(r, str):
            table.add_row(r, *[""] * 10)
            continue
        table.add_row(r.label, f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}",
                      f"{r.mean_ms:.2f} ± {r.std_ms:.2f}", f"{r.throughput_ips:.1f}",
                      f"{base.p50_ms / r.p50_ms:.2f}x", f"{r.load_ms:.0f}", f"{r.peak_rss_mb:.0f}",
                      f"{r.gflops_per_s:.1f}" if r.gflops_per_s else "n/a", str(r.runs))
    console.print(table)
