"""Reports of an optimize run: OUT/report.html (self-contained), OUT/report.md and OUT/trials.csv, all rebuilt
from OUT/trials.sqlite by `write_report(out)` (what `cvtune report OUT` calls)."""

from __future__ import annotations

from pathlib import Path

from ..files import write_text
from .data import RunData, load_run
from .html import render_html
from .markdown import render_csv, render_markdown

__all__ = ["RunData", "load_run", "render_html", "render_markdown", "render_csv", "write_report"]


def write_report(out: str | Path) -> Path:
    """(Re)write report.html, report.md and trials.csv in OUT; returns the HTML path."""
    run = load_run(out)
    out = Path(out)
    write_text(out / "report.md", render_markdown(run))
    write_text(out / "trials.csv", render_csv(run))
    return write_text(out / "report.html", render_html(run))
