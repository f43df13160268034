"""Task registry: name -> Task class (textdet, ocr, classify, detect, fidelity)."""

from __future__ import annotations

from .base import Metrics, Task

TASKS: dict[str, type[Task]] = {}

__all__ = ["TASKS", "Metrics", "Task"]
