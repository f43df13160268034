"""`cvtune schema deploy|coco`: the JSON Schema of a document cvtune reads or writes (versioned by its `$id`)."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    from ..schemas import SCHEMAS

    @app.command("schema")
    def schema_cmd(
        kind: str = typer.Argument(..., help=f"Which document: {', '.join(SCHEMAS)}."),
    ) -> None:
        """Print the JSON Schema (draft 2020-12) of a document cvtune reads or writes, e.g. the deploy.json the
        optimizer exports ($id cvtune-deploy/N: N changes when a field changes meaning)."""
        from ..schemas import json_schema

        print(json.dumps(json_schema(kind), indent=2))
