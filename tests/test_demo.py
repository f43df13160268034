"""`cvtune demo` is what `make demo` runs (the full search is exercised there and by the optimizer tests); here
its help and its bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvtune.cli import run_cli


def test_demo_help_explains_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["demo", "--help"]) == 0
    assert "article-style" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [(["--images", "3"], "--images must be at least 10"),
                                           (["--budget", "soon"], "soon"),
                                           (["--max-drop", "lots"], "lots")])
def test_demo_bad_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                       message: str) -> None:
    assert run_cli(["demo", "-o", str(tmp_path / "demo"), "--images", "10", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error:") and message in err and "Traceback" not in err
