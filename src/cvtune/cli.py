"""The `cvtune` command line: a thin typer app. Each module in cvtune.commands registers its own commands.

This file holds no logic: it discovers command modules and turns every failure into one `Error: ...` line with an
exit code (2 for bad input, usage errors included; 1 for a bug in cvtune, which says how to see the traceback).
"""

from __future__ import annotations

import errno
import importlib
import os
import pkgutil
import shlex
import sys

import typer

from . import __version__, commands, files
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

DEBUG_ENV = "CVTUNE_DEBUG"  # set to 1 to see the traceback of an internal error


def _show_version(value: bool) -> None:
    if value:
        print(f"cvtune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print cvtune's version and exit."),
) -> None:
    """Find the fastest way to run a vision model within an accuracy budget, measured on this machine."""


for _info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{commands.__name__}.{_info.name}").register(app)


def _error(message: str) -> None:
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True, markup=True)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _safe_streams() -> None:
    """Print paths holding non-UTF-8 bytes as escapes instead of dying with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "") == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or odd stream (tests capture them)
                pass


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (tests call this; `main` exits with it)."""
    # OpenCV prints importer errors to stderr before raising; the CLI reports them as one clear line instead. Set
    # here, for the command line's own process (and the children it starts), never when cvtune is imported.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
    from typer._click import exceptions as click_errors

    args = list(sys.argv[1:] if argv is None else argv)
    files.current_command = shlex.join(["cvtune", *(files.display_path(a) for a in args)])
    _safe_streams()
    try:
        result = app(args=args, prog_name="cvtune", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return exc.exit_code
    except click_errors.ClickException as exc:  # usage errors: bad option values, missing arguments
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        _error(_one_line(exc.format_message()) + hint)
        return 2
    except CvtuneError as exc:
        _error(_one_line(exc))
        return exc.exit_code
    except typer.Abort:
        err_console.print("Aborted.")
        return 1
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        return 130
    except OSError as exc:  # a file problem no library call above turned into a CvtuneError
        full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        name = exc.filename2 if full and exc.filename2 is not None else exc.filename  # copyfile: source first
        where = f"{files.display_path(name)}: " if name is not None else ""
        _error(f"{where}{exc.strerror or _one_line(exc)}")
        return 2
    except MemoryError:
        _error("ran out of memory; try smaller inputs (--input-shape, --limit, --calib-size) or a machine with more")
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        detail = _one_line(str(exc))[:300]
        _error(f"internal error in cvtune: {type(exc).__name__}{': ' + detail if detail else ''} (please report it; "
               f"run with {DEBUG_ENV}=1 to see the traceback)")
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    files.use_process_temp_root()
    sys.exit(run_cli())
