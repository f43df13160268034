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
        model: Path = typer.Argument(..., help="Model file (.onnx, .tflite, or a TensorFlow .pb)."),
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


def _print_preprocessing(info: dict) -> None:
    """The spec (to copy into --preprocess) and where it came from; a guess in red."""
    if "preprocessing" not in info:
        return
    source = info["preprocessing_source"] or "unknown"
    style = "bold red" if source == "guessed" else "green"
    console.print(f"preprocessing: [{style}]{source}[/] -- {info['preprocessing_description'].split(' [')[0]}",
                  highlight=False)
    console.print(f"  --preprocess \"{info['preprocessing']['spec']}\"", highlight=False, markup=False)


def _print(info: dict) -> None:
    console.print(f"[bold]{info['path']}[/]  ({info['format']}, {_si(info['file_size'], 'B')})", highlight=False)
    if "inputs" in info:
        _print_io(info)
    if info["format"] == "tflite":
        _print_tflite(info)
        _print_preprocessing(info)
    elif info["format"] != "onnx":
        console.print(info["note"])
        _print_preprocessing(info)
    else:
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
        console.print(facts)
        _print_preprocessing(info)
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
        _print_runtimes(info["runtimes"], "Runtime support (each tried in a child process)")
    if (info.get("conversion") or {}).get("runtimes"):
        _print_runtimes(info["conversion"]["runtimes"], "Runtime support of the converted ONNX model")


def _print_io(info: dict) -> None:
    io = Table(title="Inputs and outputs (as the file declares them)", show_lines=False)
    for col in ("", "name", "shape", "dtype", "dynamic dims", "quantization"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            shape = "x".join(str(d) if isinstance(d, int) else "?" for d in t["shape"])
            if t.get("layout"):
                shape += f" ({t['layout']})"
            q = t.get("quantization")
            quant = (f"scale {', '.join(f'{v:.4g}' for v in q['scale'][:3])}, zero point "
                     f"{', '.join(map(str, q['zero_point'][:3]))}") if q else "-"
            io.add_row(kind[:-1], t["name"], shape, t["dtype"], ",".join(map(str, t["dynamic_dims"])) or "-", quant)
    console.print(io)


def _print_tflite(info: dict) -> None:
    facts = Table(show_header=False, title="Facts")
    facts.add_column()
    facts.add_column()
    fed = info["fed_as"]
    facts.add_row("fed as", f"{fed['name']} {'x'.join(map(str, fed['shape']))} ({fed['layout']}; no --input-shape "
                  f"needed)")
    facts.add_row("TFLite", f"schema {info['tflite']['schema_version']}, {info['tflite']['subgraphs']} subgraph(s), "
                  f"{info['tflite']['description'] or 'no description'}")
    facts.add_row("ops", ", ".join(f"{k} {v}" for k, v in list(info["op_histogram"].items())[:10]))
    conversion = info["conversion"]
    if conversion["ok"]:
        facts.add_row("ONNX conversion", f"{conversion['converter']}: {conversion['nodes']} nodes, "
                      f"{conversion['onnx']}")
        shape = "x".join(map(str, info["flops_input_shape"]))
        facts.add_row(f"FLOPs at {shape}", _si(info["flops"]) + " (of the converted graph; 2 x MACs)")
        facts.add_row("parameters", _si(info["params"]))
    else:
        facts.add_row("ONNX conversion", f"[red]failed[/]: {conversion['error']}")
    console.print(facts)


def _print_runtimes(results: list[dict], title: str) -> None:
    rt = Table(title=title)
    for col in ("runtime", "loads and runs", "outputs"):
        rt.add_column(col)
    for r in results:
        shapes = "; ".join("x".join(map(str, s)) for s in r["output_shapes"])
        if not r["ok"]:
            rt.add_row(r["label"], "[red]no[/]", r["error"])
        elif r.get("output_problem"):
            rt.add_row(r["label"], "[yellow]yes, outputs differ[/]", f"{shapes}: {r['output_problem']}")
        else:
            rt.add_row(r["label"], "[green]yes[/]", shapes)
    console.print(rt)
