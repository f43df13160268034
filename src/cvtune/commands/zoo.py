"""`cvtune zoo list|path`: the bundled real models."""

from __future__ import annotations

import typer
from rich.table import Table

from .. import zoo
from ..console import console
from ._options import JSON, print_json


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The bundled real models (PP-OCRv4 from the rapidocr-onnxruntime wheel).",
                        no_args_is_help=True)

    @group.command("list")
    def list_models(as_json: bool = JSON) -> None:
        """List the zoo's models with their task and preprocessing."""
        rows = [
            {"name": m.name, "task": m.task, "file": str(zoo.path(m.name)), "description": m.description,
             "default_shape": list(m.default_shape), "preprocessing": m.preprocessing.to_dict()}
            for m in zoo.ZOO.values()
        ]
        if as_json:
            print_json("zoo", rows)
            return
        table = Table(title="cvtune zoo")
        for col in ("name", "task", "default shape", "description"):
            table.add_column(col)
        for row in rows:
            table.add_row(row["name"], row["task"], "x".join(map(str, row["default_shape"])), row["description"])
        console.print(table)

    @group.command("path")
    def model_path(name: str = typer.Argument(..., help="Zoo model name, e.g. ppocr-det.")) -> None:
        """Print the absolute path of a zoo model (use it wherever cvtune takes a MODEL)."""
        print(zoo.path(name))

    app.add_typer(group, name="zoo")
