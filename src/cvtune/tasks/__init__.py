"""Task registry: name -> Task class (textdet, ocr, classify, detect, segment, fidelity)."""

from __future__ import annotations

from ..errors import UsageError
from .base import Metrics, Task
from .classify import ClassifyTask
from .decoders import DECODERS as DETECT_DECODERS
from .detect import DetectTask
from .fidelity import FidelityTask
from .ocr import OcrTask
from .segment import SegmentTask
from .textdet import TextDetTask

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (TextDetTask, OcrTask, ClassifyTask, DetectTask, SegmentTask,
                                                          FidelityTask)}


def get_task_class(name: str) -> type[Task]:
    """The Task class registered as `name`; unknown names raise UsageError listing the valid ones."""
    if name not in TASKS:
        raise UsageError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


from .spec import TaskSpec, resolve_task  # noqa: E402 - needs get_task_class defined

__all__ = ["TASKS", "DETECT_DECODERS", "Metrics", "Task", "TaskSpec", "ClassifyTask", "DetectTask", "FidelityTask",
           "OcrTask", "SegmentTask", "TextDetTask", "get_task_class", "resolve_task"]
