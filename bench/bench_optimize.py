"""Optimizer benchmark: the demo's story, measured. Generate the synthetic text set, run `optimize` on the zoo's
text detector with a 1% relative hmean budget and a 3-minute wall-clock budget, and print the chosen configuration
against the article-style baseline (OpenCV DNN defaults), both timed back to back in the same run.

Targets (issue 7): >= 2x p50 speed-up at <= 1% relative hmean drop, within 3 minutes of search on 2 cores.
Environment variables: CVTUNE_BENCH_IMAGES (default 80), CVTUNE_BENCH_BUDGET (default 3m), CVTUNE_BENCH_PRESET
(default quick), CVTUNE_BENCH_EVAL_IMAGES (default 40).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from rich.table import Table

from cvtune import zoo
from cvtune.console import console
from cvtune.search import Budget, OptimizeConfig, optimize, parse_duration
from cvtune.search.space import space_preset


def make_data(root: Path, n: int) -> Path:
    from cvtune.data.synth import SynthConfig, generate_text_set

    generate_text_set(root, SynthConfig(n=n, seed=0))
    return root / "textdet"


def main() -> None:
    n_images = int(os.environ.get("CVTUNE_BENCH_IMAGES", "80"))
    budget = parse_duration(os.environ.get("CVTUNE_BENCH_BUDGET", "3m"))
    preset = os.environ.get("CVTUNE_BENCH_PRESET", "quick")
    eval_images = int(os.environ.get("CVTUNE_BENCH_EVAL_IMAGES", "40"))
    with tempfile.TemporaryDirectory(prefix="cvtune-bench-optimize-") as tmp:
        data = make_data(Path(tmp) / "synth", n_images)
        config = OptimizeConfig(model=zoo.path("ppocr-det"), task="textdet", data=data, out=Path(tmp) / "run",
                                budget=Budget.parse("1%"), time_budget_s=budget, space=space_preset(preset),
                                screen_images=12, eval_images=eval_images)
        started = time.perf_counter()
        result = optimize(config)
        seconds = time.perf_counter() - started
        rows = [(t.rung, t.status) for t in (result.baseline_final, result.best_final) if t]
    table = Table(title=f"bench_optimize: ppocr-det, {n_images} synthetic images, preset {preset}, "
                        f"budget {budget:.0f} s (2 busy cores: timings are noisy)")
    for col in ("", "configuration", "p50 ms", "hmean", "ratio vs baseline"):
        table.add_column(col, justify="left" if col in ("", "configuration") else "right")
    base, best = result.baseline, result.best
    if base and result.baseline_final:
        table.add_row("baseline", base.label, f"{result.baseline_final.p50_ms:.1f}", f"{base.metric_value:.4f}",
                      "1.00x")
    if best and result.best_final:
        table.add_row("chosen", best.label, f"{result.best_final.p50_ms:.1f}", f"{best.metric_value:.4f}",
                      f"{result.speedup:.2f}x")
    console.print(table)
    drop = result.drop if result.drop is not None else float("nan")
    speedup = result.speedup or 0.0
    console.print(f"speed-up {speedup:.2f}x (target >= 2x), relative hmean drop {drop:.2%} (target <= 1%), "
                  f"search {seconds:.0f} s (target <= 180 s), {result.n_trials} trials, rows {rows}; "
                  f"{'targets met' if speedup >= 2 and drop <= 0.01 and seconds <= 180 else 'targets NOT met'}"
                  + (f"; stopped early: {result.stopped_early}" if result.stopped_early else ""), highlight=False)


if __name__ == "__main__":
    main()
