"""`cvtune report OUT`: rebuild report.html, report.md and trials.csv from an optimize run's trial store."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..console import console
from ._options import JSON


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        out: Path = typer.Argument(..., help="Output folder of `cvtune optimize` (holds trials.sqlite)."),
        as_json: bool = JSON,
    ) -> None:
        """Regenerate OUT/report.html (self-contained), OUT/report.md and OUT/trials.csv from OUT/trials.sqlite."""
        from ..report import load_run, write_report

        html = write_report(out)
        if as_json:
            run = load_run(out)
            print(json.dumps({"report": str(html), "markdown": str(out / "report.md"), "csv": str(out / "trials.csv"),
                              "trials": len(run.trials), "result": run.result}, indent=2, default=str))
            return
        console.print(f"wrote {html}, {out / 'report.md'} and {out / 'trials.csv'}", highlight=False)
