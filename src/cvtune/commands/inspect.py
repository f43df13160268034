"""`cvtune inspect MODEL`: shapes, params, FLOPs, sparsity, ops, preprocessing, and which runtimes load it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..console import console
from ..inspection import inspect_model
from ..model import parse_shape
from ._options import JSON, input_shape_option, print_json


def _si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}".strip()


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect_cmd(
        model: Path = typer.Argument(..., help="Model file (.onnx; .pb/.tflite run through OpenCV only)."),
        input_shape: str = input_shape_option("FLOPs are counted and runtimes probed at it."),
        layers: bool = typer.Option(False, "--layers", help="List every weighted layer's FLOPs and sparsity."),
        no_probe: bool = typer.Option(False, "--no-probe", help="Skip trying each runtime in a child process."),
        as_json: bool = JSON,
    ) -> None:
        """Summarize a model: inputs/outputs, opset, params, FLOPs per layer, sparsity, ops, and runtime support."""
        shape = parse_shape(input_shape) if input_shape else None
        info = inspect_model(model, input_shape=shape, probe=not no_probe, layers=layers)
        probes = info.get("runtimes") or []
        if info["format"] != "onnx" and probes and not any(r["ok"] for r in probes):
            from ..errors import ModelError  # OpenCV is the only reader of .pb/.tflite: if it cannot, nothing can

            raise ModelError(f"no runtime here can load {model}: {probes[0]['error']}")
        if as_json:
            print_json("inspect", info)
            return
        _print(info)


def _print(info: dict) -> None:
    console.print(f"[bold]{info['path']}[/]  ({info['format']}, {_si(info['file_size'], 'B')})", highlight=False)
    if info["format"] != "onnx":
        console.print(info["note"])
    else:
        io = Table(title="Inputs and outputs", show_lines=False)
        for col in ("", "name", "shape", "dtype", "dynamic dims"):
            io.add_column(col)
        for kind in ("inputs", "outputs"):
            for t in info[kind]:
                shape = "x".join(str(d) if isinstance(d, int) else "?" for d in t["shape"])
                io.add_row(kind[:-1], t["name"], shape, t["dtype"],
                           ",".join(map(str, t["dynamic_dims"])) or "-")
        console.print(io)
        shape = "x".join(map(str, info["flops_input_shape"]))
        facts = Table(show_header=False, title="Facts")
        facts.add_column()
        facts.add_column()
        facts.add_row("opset / IR", f"{info['opset']} / {info['ir_version']}")
        facts.add_row("parameters", _si(info["params"]))
        facts.add_row(f"FLOPs at {shape}", _si(info["flops"]) + " (Conv, ConvTranspose, Gemm, MatMul; 2 x MACs)")
        facts.add_row("OpenCV getFLOPS", _si(info["opencv_flops"]) if info["opencv_flops"] else
                      "not available from this OpenCV's Python binding")
        facts.add_row("weight sparsity", f"{info['weight_sparsity']:.1%}")
        facts.add_row("nodes", str(info["nodes"]))
        facts.add_row("ops", ", ".join(f"{k} {v}" for k, v in list(info["op_histogram"].items())[:10]))
        pre = info["preprocessing"]
        facts.add_row("preprocessing", f"size {pre['input_size'] or 'dynamic'} (multiple of {pre['size_multiple']}), "
                      f"scale {pre['scale']:.5g}, mean {pre['mean']}, std {pre['std']}, "
                      f"{'RGB' if pre['rgb'] else 'BGR'}, {pre['layout']}")
        console.print(facts)
        layer_rows = info.get("layers") or info.get("top_layers") or []
        if layer_rows:
            lt = Table(title="Layers by FLOPs" if "top_layers" in info else "Weighted layers")
            for col in ("layer", "op", "FLOPs", "share" if "top_layers" in info else "sparsity"):
                lt.add_column(col)
            for row in layer_rows:
                extra = f"{row['share']:.1%}" if "share" in row else f"{row['sparsity']:.1%}"
                lt.add_row(row["name"], row["op"], _si(row["flops"]), extra)
            console.print(lt)
    if "runtimes" in info:
        rt = Table(title="Runtime support (each tried in a child process)")
        for col in ("runtime", "loads and runs", "detail"):
            rt.add_column(col)
        for r in info["runtimes"]:
            shapes = "; ".join("x".join(map(str, s)) for s in r["output_shapes"])
            detail = f"outputs {shapes}" if r["ok"] else r["error"]
            rt.add_row(r["label"], "[green]yes[/]" if r["ok"] else "[red]no[/]", detail)
        console.print(rt)
