"""Acceleration benchmark: for the zoo's detector and classifier, every sensible instances x threads x batch
layout for this machine's cores, per runtime (OpenCV, ONNX Runtime, OpenVINO when installed), then a summary:
single-session latency vs the best throughput layout, as ratios against 1 instance x 1 thread and against
1 instance x all cores (target on 2 cores: >= 1.6x images/s over 1x1, and better than 1x2).

Numbers are measured here and now: on a shared machine they are noisy (the load average is printed)."""

from __future__ import annotations

import os

from rich.table import Table

from cvtune import zoo
from cvtune.commands.bench import print_throughput
from cvtune.console import console
from cvtune.runtimes import RUNTIMES, make_runtime
from cvtune.runtimes.devices import usable_cores
from cvtune.throughput import Layout, ThroughputResult, ThroughputSettings, sweep, sweep_layouts

CASES = [("ppocr-det", (1, 3, 640, 640)), ("ppocr-cls", (1, 3, 48, 192))]
TARGET_RATIO = 1.6


def runtimes() -> list:
    chosen = [make_runtime("opencv", engine="new"), make_runtime("ort")]
    if "openvino" in RUNTIMES:
        chosen.append(make_runtime("openvino"))
    return chosen


def summarize(name: str, results: dict[str, list]) -> Table:
    cores = usable_cores()
    table = Table(title=f"{name}: latency layout vs best throughput layout ({cores} cores)")
    for col in ("runtime", "1 session p50 ms", "1x1 img/s", f"1x{cores} img/s", "best layout", "best img/s",
                "best / 1x1", f"best / 1x{cores}", "target met", "vs OpenCV best"):
        table.add_column(col, justify="left" if col in ("runtime", "best layout") else "right")
    opencv_best = None
    for label, rows in results.items():
        ok = {r.layout: r for r in rows if isinstance(r, ThroughputResult)}
        one, full = ok.get(Layout(1, 1)), ok.get(Layout(1, cores))
        best = max(ok.values(), key=lambda r: r.images_per_s, default=None)
        if best is None or one is None or full is None:
            table.add_row(label, *["failed"] + [""] * 9)
            continue
        opencv_best = opencv_best or (best.images_per_s if label.startswith("opencv") else None)
        met = best.images_per_s / one.images_per_s >= TARGET_RATIO and best.images_per_s > full.images_per_s
        table.add_row(label, f"{full.p50_ms:.2f}", f"{one.images_per_s:.1f}", f"{full.images_per_s:.1f}",
                      best.layout.label(), f"{best.images_per_s:.1f}", f"{best.images_per_s / one.images_per_s:.2f}x",
                      f"{best.images_per_s / full.images_per_s:.2f}x", "yes" if met else "no",
                      f"{best.images_per_s / opencv_best:.2f}x" if opencv_best else "n/a")
    return table


def main() -> None:
    settings = ThroughputSettings(duration_s=3.0, warmup=2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"layouts for {usable_cores()} cores: {', '.join(lo.label() for lo in sweep_layouts())}; "
          f"{settings.duration_s:g} s each; load average at start {load:.1f} (a busy machine makes numbers noisy)")
    for name, shape in CASES:
        results: dict[str, list] = {}
        for runtime in runtimes():
            results[runtime.label()] = sweep(zoo.path(name), runtime, shape, settings=settings)
        print_throughput([r for rows in results.values() for r in rows])
        console.print(summarize(name, results))


if __name__ == "__main__":
    main()
