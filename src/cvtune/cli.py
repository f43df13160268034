"""The `cvtune` command line: a thin typer app. Each module in cvtune.commands registers its own commands.

This file holds no logic: it discovers command modules and turns cvtune's errors into one line and exit code 2.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import typer

from . import commands
from .console import err_console
from .errors import CvtuneError

app = typer.Typer(
    name="cvtune",
    help="Find the fastest way to run a vision model within an accuracy budget, measured on this machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

for _info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{commands.__name__}.{_info.name}").register(app)


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (tests call this; `main` exits with it)."""
    # OpenCV prints importer errors to stderr before raising; the CLI reports them as one clear line instead. Set
    # here, for the command line's own process (and the children it starts), never when cvtune is imported.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
    try:
        app(args=argv, prog_name="cvtune")  # standalone mode: usage errors and --help end in SystemExit
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except CvtuneError as exc:
        err_console.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        return 130
    return 0


def main() -> None:
    sys.exit(run_cli())
