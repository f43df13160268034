"""`cvtune bench MODEL`: latency percentiles, throughput, memory and load time, each configuration in its own
process; `--compare` adds configurations printed side by side with ratios against the first."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..bench import BenchResult, BenchSettings, measure
from ..console import console, err_console
from ..errors import TrialFailed
from ..model import parse_shape
from ._options import ENGINE, JSON, TARGET, THREADS, build_runtime, parse_runtime_spec, runtime_option


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_cmd(
        model: Path = typer.Argument(..., help="Model file (.onnx, or .pb/.tflite through OpenCV)."),
        runtime: str = runtime_option(),
        engine: str = ENGINE,
        target: str = TARGET,
        threads: int = THREADS,
        batch: int = typer.Option(1, "--batch", "-b", help="Images per run (the model needs a dynamic batch dim)."),
        input_shape: str = typer.Option(None, "--input-shape", help="NxCxHxW, e.g. 1x3x640x640 (default: the "
                                        "model's own, or the zoo's default for dynamic models)."),
        compare: list[str] = typer.Option(None, "--compare", "-c", help="Another configuration, RUNTIME[:k=v,...], "
                                          "e.g. ort or opencv:engine=classic,threads=1. Repeatable."),
        warmup: int = typer.Option(3, "--warmup", help="Untimed runs before measuring."),
        min_runs: int = typer.Option(10, "--min-runs", help="Measure at least this many runs..."),
        min_time: float = typer.Option(1.0, "--min-time", help="...and at least this many seconds."),
        as_json: bool = JSON,
    ) -> None:
        """Benchmark a model: p50/p90/p99/mean/std latency, images/s, peak RSS, load time, GFLOP/s."""
        shape = parse_shape(input_shape) if input_shape else None
        settings = BenchSettings(warmup=warmup, min_runs=min_runs, min_time_s=min_time)
        runtimes = [build_runtime(runtime, engine=engine, target=target, threads=threads)]
        runtimes += [parse_runtime_spec(spec) for spec in compare or []]
        results: list[BenchResult | str] = []
        for rt in runtimes:
            err_console.print(f"measuring {rt.label()} ...", highlight=False)
            try:
                results.append(measure(model, rt, shape, batch=batch, settings=settings))
            except TrialFailed as exc:
                if len(runtimes) == 1:
                    raise
                results.append(f"{rt.label()}: failed: {exc}")
        if as_json:
            rows = [r.to_dict() if isinstance(r, BenchResult) else {"error": r} for r in results]
            print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
            return
        print_results(results)


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
