"""Foundation benchmark: the zoo models with every OpenCV engine and ONNX Runtime, side by side, as ratios
against OpenCV's default engine measured in the same run."""

from __future__ import annotations

from cvtune import zoo
from cvtune.bench import BenchSettings, measure
from cvtune.commands.bench import print_results
from cvtune.errors import TrialFailed
from cvtune.runtimes import make_runtime
from cvtune.runtimes.opencv import available_engines

CASES = [("ppocr-det", (1, 3, 640, 640)), ("ppocr-cls", (1, 3, 48, 192)), ("ppocr-rec", (1, 3, 48, 320))]


def main() -> None:
    settings = BenchSettings(warmup=3, min_runs=20, min_time_s=3.0)
    for name, shape in CASES:
        runtimes = [make_runtime("opencv", engine=e) for e in available_engines()] + [make_runtime("ort")]
        results = []
        for rt in runtimes:
            try:
                results.append(measure(zoo.path(name), rt, shape, settings=settings))
            except TrialFailed as exc:
                results.append(f"{rt.label()}: does not run: {exc}"[:150])
        print_results(results)


if __name__ == "__main__":
    main()
