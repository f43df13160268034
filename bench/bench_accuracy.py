"""Accuracy benchmark: the zoo's fp32 PP-OCRv4 models on 100 generated text images (seed 0).
Targets (issue 3): detector hmean >= 0.85, detector + recognizer line accuracy >= 0.80."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.table import Table

from cvtune import zoo
from cvtune.console import console
from cvtune.data.synth import SynthConfig, generate_text_set
from cvtune.evaluate import evaluate
from cvtune.runtimes import make_runtime

N_IMAGES = 100


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cvtune-bench-acc-") as tmp:
        root = Path(tmp) / "text"
        generate_text_set(root, SynthConfig(n=N_IMAGES, seed=0, fonts="bundled"))
        runtime = make_runtime("ort")
        rows = [
            ("detector hmean (IoU 0.5)", evaluate(zoo.path("ppocr-det"), runtime, "textdet", root / "textdet",
                                                  progress=False), 0.85),
            ("det + cls + rec line accuracy", evaluate(zoo.path("ppocr-rec"), runtime, "ocr", root / "textdet",
                                                       progress=False), 0.80),
            ("recognizer on line crops", evaluate(zoo.path("ppocr-rec"), runtime, "ocr", root / "ocr",
                                                  progress=False), None),
        ]
    table = Table(title=f"Accuracy of the fp32 zoo models on {N_IMAGES} generated text images (seed 0)")
    for col in ("measure", "value", "95% CI", "target", "met", "details"):
        table.add_column(col)
    for label, m, target in rows:
        details = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.details.items())
        table.add_row(label, f"{m.value:.3f}", f"[{m.ci_low:.3f}, {m.ci_high:.3f}]",
                      f">= {target}" if target else "-", ("yes" if m.value >= target else "NO") if target else "-",
                      details[:90])
    console.print(table)


if __name__ == "__main__":
    main()
