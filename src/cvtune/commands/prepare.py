"""`cvtune prepare MODEL -o OUT`: static shapes + simplification, verified against the original."""

from __future__ import annotations

from pathlib import Path

import typer

from ..console import console
from ..model import parse_shape
from ..prepare import prepare
from ._options import FORCE, JSON, input_shape_option, print_json


def register(app: typer.Typer) -> None:
    @app.command("prepare")
    def prepare_cmd(
        model: Path = typer.Argument(..., help="Model to prepare (never modified): .onnx, or .tflite / .pb "
                                     "to convert to ONNX first."),
        output: Path = typer.Option(..., "--output", "-o", help="Where to write the prepared model."),
        input_shape: str = input_shape_option("Every dynamic dim is fixed to it."),
        no_simplify: bool = typer.Option(False, "--no-simplify", help="Only fix the shapes; skip onnxslim."),
        force: bool = FORCE,
        as_json: bool = JSON,
    ) -> None:
        """Make dynamic dims static and simplify (onnxslim) so every engine, including OpenCV's classic one,
        can load the model; then check it computes the same outputs as the original; -o is written only once
        that check passed. A .tflite model is converted to ONNX first (cvtune's converter, checked against
        OpenCV's run of the .tflite)."""
        from ..files import check_output

        shape = parse_shape(input_shape) if input_shape else None
        check_output(output, force=force, inputs=(model,), suffixes=(".onnx",))
        result = prepare(model, output, shape, do_simplify=not no_simplify)
        if as_json:
            print_json("prepare", result.to_dict())
            return
        eq = result.equivalence
        if result.conversion:
            check = result.conversion["check"] or {}
            console.print(f"converted {model} to ONNX with the {result.conversion['converter']} converter: outputs "
                          f"match OpenCV's run of it ({check.get('detail', 'not checked')}, "
                          f"{check.get('inputs_checked', 0)} inputs)", highlight=False)
        console.print(f"wrote {result.output} at {'x'.join(map(str, result.input_shape))}: "
                      f"{result.nodes_before} -> {result.nodes_after} nodes; outputs match the original "
                      f"(max abs diff {eq.max_abs_diff:.2e}, cosine {eq.cosine:.6f}, {eq.inputs_checked} inputs)")
