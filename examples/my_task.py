"""A task plugin: your own preprocessing, postprocessing and metric, used by every cvtune command.

    cvtune eval selfie_segmentation.tflite --task-plugin examples/my_task.py --data photos/ -O masks=masks/
    cvtune optimize selfie_segmentation.tflite --task-plugin examples/my_task.py --data photos/ -O masks=masks/ -o opt

`person_mask` scores a person segmenter (one sigmoid map, like MediaPipe's selfie_segmentation) by the IoU of its
mask (> 0.5) with the mask PNG of the same name in the `masks` folder (255 = person). cvtune imports this file in
every process that builds the task, so keep module-level code to definitions.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cvtune.tasks import Metrics, Task


class PersonMask(Task):
    name = "person_mask"
    metric = "mask_iou"
    dataset_kinds = ("images",)

    def __init__(self, preprocessing=None, *, masks: str = "", **options) -> None:
        """`masks` (-O masks=DIR): the folder of reference masks; each option is a keyword parameter, so a
        misspelt -O KEY=VALUE is refused instead of ignored."""
        super().__init__(preprocessing, **options)
        self.masks = masks

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """BGR image -> 1x3xHxW RGB in [0, 1] at the model's input size (from the model file)."""
        height, width = self.input_size or self.preprocessing.input_size or (256, 256)
        rgb = cv2.cvtColor(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        return rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0, image.shape[:2]

    def postprocess(self, outputs: list[np.ndarray], meta: tuple[int, int]) -> dict:
        """The person mask at the image's own size, and the fraction of the image it covers."""
        scores = np.squeeze(outputs[0])
        mask = cv2.resize(scores.astype(np.float32), (meta[1], meta[0])) > 0.5
        return {"foreground": float(mask.mean()), "mask": mask}

    def score(self, predictions: list[dict], samples, dataset) -> Metrics:
        if not self.masks:
            raise ValueError("person_mask needs the reference masks: -O masks=DIR")
        folder = Path(self.masks)
        ious = []
        for prediction, sample in zip(predictions, samples, strict=True):
            truth = cv2.imread(str(folder / (sample.path.stem + ".png")), cv2.IMREAD_GRAYSCALE) > 127
            union = np.logical_or(truth, prediction["mask"]).sum()
            ious.append(np.logical_and(truth, prediction["mask"]).sum() / union if union else 1.0)
        return Metrics(self.name, self.metric, float(np.mean(ious)), n_images=len(ious),
                       details={"min_iou": float(np.min(ious))})
