"""`cvtune devices`: what this machine offers (CPU features, cores, OpenCL/CUDA devices, ORT providers, OpenVINO
devices, OpenCV build facts), so users know which --target/--runtime values can work here."""

from __future__ import annotations

import typer
from rich.table import Table

from ..console import console
from ..runtimes.devices import detect
from ._options import JSON, print_json


def register(app: typer.Typer) -> None:
    @app.command("devices")
    def devices_cmd(as_json: bool = JSON) -> None:
        """Show the CPU (model, AVX2/AVX-512/VNNI, cores), OpenCL and CUDA devices, ONNX Runtime providers,
        OpenVINO devices and which OpenCV DNN targets are available here (and why not)."""
        report = detect()
        if as_json:
            print_json("devices", report.to_dict())
            return
        cpu, cv, ort, ov = report.cpu, report.opencv, report.ort, report.openvino
        table = Table(title="cvtune devices", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        table.add_row("CPU", cpu.model)
        table.add_row("cores", f"{cpu.physical_cores} physical, {cpu.logical_cores} logical, "
                               f"{cpu.usable_cores} usable by this process")
        table.add_row("CPU features", ", ".join(cpu.features) or "none detected")
        table.add_row("int8 dot-product (VNNI)", "yes" if cpu.has_vnni else "no")
        table.add_row("OpenCV", f"{cv['version']}, engines {', '.join(cv['engines'])}, {cv['threads']} threads, "
                                f"parallel: {cv['parallel_framework'] or '?'}, SIMD: {cv['simd_dispatch'] or '?'}")
        for name, status in cv["targets"].items():
            table.add_row(f"  target {name}", "available" if status["available"] else
                          f"[dim]no: {status.get('reason', '')}[/]")
        table.add_row("OpenCL devices", "; ".join(f"{d['name']} ({d['vendor']})" for d in report.opencl_devices)
                      or "none")
        table.add_row("CUDA devices (OpenCV)", "; ".join(d["name"] for d in report.cuda_devices) or "none")
        table.add_row("ONNX Runtime", f"{ort['version']}: {', '.join(ort['providers'])}" if ort.get("installed")
                      else "not installed")
        table.add_row("OpenVINO", f"{ov['version']}: " + ", ".join(f"{k} ({v})" for k, v in ov["devices"].items())
                      if ov.get("installed") else f"not installed ({ov.get('hint', '')})")
        console.print(table)
