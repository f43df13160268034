"""Optimize a model with your own metric and data loader, as with INC's eval_fn or NNCF's validation_fn.

    python examples/optimize_with_eval_fn.py selfie_segmentation.tflite photos/ --out opt --time 2m

`eval_fn(deployed) -> float` (higher is better) gets each configuration cvtune proposes as a `cvtune.Deployed`:
open a session with `deployed.open()` and run your own images through it. Here the metric is the mean IoU of the
person masks with those of the original model (no labels needed); cvtune keeps the fastest configuration whose
IoU drop stays within `max_drop`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import cvtune


def load_batches(folder: Path, size: tuple[int, int]) -> list[np.ndarray]:
    """My data loader: every image in `folder`, RGB, resized, in [0, 1], as 1x3xHxW float32."""
    batches = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(path)), size[::-1]), cv2.COLOR_BGR2RGB)
        batches.append(rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    return batches


def make_eval_fn(model: Path, folder: Path):
    """eval_fn scoring a Deployed by mask IoU against the original model's masks on my images."""
    height, width = _input_size(model)
    batches = load_batches(folder, (height, width))
    reference = cvtune.Deployed.from_model(model, {"runtime": "opencv"})  # the original, as OpenCV runs it
    session = reference.open()
    truth = [np.squeeze(session.run(x)[0]) > 0.5 for x in batches]
    session.close()

    def eval_fn(deployed: cvtune.Deployed) -> float:
        session = deployed.open()
        try:
            ious = []
            for x, t in zip(batches, truth, strict=True):
                mask = np.squeeze(session.run(x)[0]) > 0.5
                union = np.logical_or(mask, t).sum()
                ious.append(np.logical_and(mask, t).sum() / union if union else 1.0)
            return float(np.mean(ious))
        finally:
            session.close()

    return eval_fn


def _input_size(model: Path) -> tuple[int, int]:
    from cvtune.model import default_input_shape

    shape = default_input_shape(model)
    return int(shape[2]), int(shape[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("opt"))
    parser.add_argument("--time", default="2m")
    parser.add_argument("--max-trials", type=int, default=None)
    args = parser.parse_args()
    try:
        result = cvtune.optimize(args.model, args.data, task="fidelity", max_drop="2%", time=args.time, out=args.out,
                                 eval_fn=make_eval_fn(args.model, args.data), preset="quick", runtimes="opencv,ort",
                                 max_trials=args.max_trials, eval_images=3)
    except cvtune.CvtuneError as exc:
        raise SystemExit(f"Error: {exc}") from None
    print(f"answer: {result.best.label if result.best else 'none'} ({'improved' if result.improved else 'as given'})")
    base, best = result.baseline, result.best
    if base is not None and best is not None and base.metric and best.metric:
        print(f"mask IoU: original {base.metric.value:.4f}, answer {best.metric.value:.4f}")
    print(f"exported: {result.exported}")


if __name__ == "__main__":
    main()
