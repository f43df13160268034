"""`cvtune report OUT`: rebuild report.html, report.md and trials.csv from an optimize run's trial store."""

from __future__ import annotations

from pathlib import Path

import typer

from ..console import console
from ._options import JSON, print_json


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        out: Path = typer.Argument(..., help="Output folder of `cvtune optimize` (holds trials.sqlite)."),
        as_json: bool = JSON,
    ) -> None:
        """Regenerate OUT/report.html (self-contained), OUT/report.md and OUT/trials.csv from OUT/trials.sqlite."""
        from ..report import load_run, write_report

        _check_run(out)
        try:
            html = write_report(out)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            from ..errors import UsageError

            raise UsageError(f"{out / 'trials.sqlite'} holds records this cvtune cannot read ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}); was it written by another version, or edited?") \
                from None
        if as_json:
            run = load_run(out)
            print_json("report", {"report": str(html), "markdown": str(out / "report.md"),
                                  "csv": str(out / "trials.csv"), "trials": len(run.trials), "result": run.result})
            return
        console.print(f"wrote {html}, {out / 'report.md'} and {out / 'trials.csv'}", highlight=False)


def _check_run(out: Path) -> None:
    """The store's metadata as the report reads it (schemas.RunMeta): a malformed value is one error line naming
    the store and the field, not a traceback from deep inside the report."""
    import json as _json

    from ..errors import UsageError
    from ..schemas import RunMeta, parse
    from ..search.store import STORE_NAME, Store

    with Store.open(out, create=False) as store:
        meta = {}
        for key in RunMeta.model_fields:
            try:
                value = store.get_meta(key)
            except (ValueError, _json.JSONDecodeError):
                raise UsageError(f"{out / STORE_NAME}: meta '{key}' is not valid JSON; the store is damaged") from None
            if value is not None:
                meta[key] = value
    parse(RunMeta, meta, source=out / STORE_NAME)
