"""Atomic output: write to a temporary file in the destination folder, then rename over the target."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it replaces `target`, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(target, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def refuse_overwrite_of_input(output: str | os.PathLike[str], *inputs: str | os.PathLike[str]) -> None:
    """Raise if `output` would replace one of the user's input files."""
    from .errors import UsageError

    out = Path(output).resolve()
    for item in inputs:
        if item is not None and Path(item).resolve() == out:
            raise UsageError(f"output {output} is the same file as the input; choose another -o path")


def cache_root() -> Path:
    """cvtune's own cache (converted models, built candidates): $CVTUNE_CACHE, else $XDG_CACHE_HOME/cvtune, else
    ~/.cache/cvtune. Everything in it can be deleted at any time; it is rebuilt on demand."""
    root = os.environ.get("CVTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cvtune")
    return Path(root)
