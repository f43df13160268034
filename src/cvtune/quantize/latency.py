"""What each layer's int8 saves, measured: ONNX Runtime's profiler on the float model and on the int8 model, per
node, mapped back to the float model's layer names.

ORT renames the nodes it optimizes (`conv0_quant_token_9` for a QLinearConv made from `conv0`, `r0_nchwc` for a
Conv fused with the Relu that produced `r0`), so a profiled name is stripped of ORT's suffixes and resolved to a
node name, or to the tensor a node produced, walking back from a fused activation to its weighted layer. Keeping a
layer in float also costs the conversions around it (a DequantizeLinear before, a QuantizeLinear after): that is
estimated from the int8 model's own Q/DQ kernels, time per element, times the layer's input and output sizes.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

__all__ = ["LayerCost", "layer_costs", "profile_nodes"]

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_SUFFIXES = re.compile(r"(_token_\d+|_nchwc|_quant|_kernel_time)+$")


@dataclass(frozen=True)
class LayerCost:
    """Per layer (float model node name): its kernel time in float and in int8, and the conversions that keeping it
    in float inside an int8 model adds. `saving_ms` is what quantizing it saves (negative: int8 is slower)."""

    name: str
    float_ms: float
    int8_ms: float
    convert_ms: float

    @property
    def saving_ms(self) -> float:
        return self.float_ms + self.convert_ms - self.int8_ms

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "float_ms": round(self.float_ms, 4), "int8_ms": round(self.int8_ms, 4),
                "convert_ms": round(self.convert_ms, 4), "saving_ms": round(self.saving_ms, 4)}


@dataclass(frozen=True)
class NodeTime:
    name: str  # as profiled
    op: str
    ms: float
    elements: int  # input + output elements of the activations (first input, first output)


def _elements(shapes: list[dict[str, list[int]]] | None) -> int:
    if not shapes:
        return 0
    dims = next(iter(shapes[0].values()), [])
    return int(np.prod(dims)) if dims else 0


def profile_nodes(model_path: str | Path, sample: np.ndarray, *, runs: int = 5, threads: int | None = None
                  ) -> list[NodeTime]:
    """Median kernel time of every node ORT runs for `sample`, over `runs` runs after one warm-up."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="cvtune-profile-") as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: sample}
        session.run(None, feed)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        del session
    times: dict[str, list[float]] = defaultdict(list)
    facts: dict[str, tuple[str, int]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        times[event["name"]].append(float(event.get("dur", 0)) / 1000.0)
        facts[event["name"]] = (str(args.get("op_name", "")), _elements(args.get("input_type_shape"))
                                + _elements(args.get("output_type_shape")))
    # the first run of each node is the warm-up
    return [NodeTime(name, facts[name][0], float(np.median(ts[1:] if len(ts) > 1 else ts)), facts[name][1])
            for name, ts in times.items()]


class _Resolver:
    """Profiled node name -> the float model's weighted layer it computes (or None)."""

    def __init__(self, model: onnx.ModelProto, layers: set[str]) -> None:
        self.layers = layers
        self.nodes = {n.name: n for n in model.graph.node if n.name}
        self.producer = {o: n for n in model.graph.node for o in n.output}

    def __call__(self, profiled: str) -> str | None:
        base = _SUFFIXES.sub("", profiled)
        node = self.nodes.get(base) or self.producer.get(base)
        for _ in range(4):  # a fused activation/add names the fused node: walk back to its weighted layer
            if node is None:
                return None
            if node.op_type not in WEIGHTED_OPS:  # a conv with its activation fused in: the time is the conv's
                weighted = next((self.producer[i] for i in node.input if i in self.producer
                                 and self.producer[i].op_type in WEIGHTED_OPS
                                 and self.producer[i].name in self.layers), None)
                if weighted is not None and base not in self.nodes:
                    return weighted.name
            if node.name in self.layers:
                return node.name
            node = self.producer.get(node.input[0]) if node.input else None
        return None


def layer_costs(float_model: str | Path, int8_model: str | Path, sample: np.ndarray, layers: list[str], *,
                runs: int = 5, threads: int | None = None) -> dict[str, LayerCost]:
    """Per layer of `layers` (node names of `float_model`, which `int8_model` quantizes): float and int8 kernel
    times from ORT's profiler on `sample`, and the Q/DQ conversions keeping it in float would add."""
    model = onnx.load(str(float_model), load_external_data=False)
    resolve = _Resolver(model, set(layers))
    float_ms: dict[str, float] = defaultdict(float)
    for t in profile_nodes(float_model, sample, runs=runs, threads=threads):
        name = resolve(t.name)
        if name:
            float_ms[name] += t.ms
    int8_ms: dict[str, float] = defaultdict(float)
    int8_elements: dict[str, int] = defaultdict(int)
    convert_ms, convert_elements = 0.0, 0
    for t in profile_nodes(int8_model, sample, runs=runs, threads=threads):
        if t.op in ("QuantizeLinear", "DequantizeLinear"):
            convert_ms += t.ms
            convert_elements += t.elements // 2  # in and out are the same tensor
            continue
        name = resolve(t.name)
        if name:
            int8_ms[name] += t.ms
            int8_elements[name] = max(int8_elements[name], t.elements)
    per_element = convert_ms / convert_elements if convert_elements else 0.0
    return {name: LayerCost(name, float_ms.get(name, 0.0), int8_ms.get(name, 0.0),
                            per_element * int8_elements.get(name, 0))
            for name in layers if name in float_ms or name in int8_ms}

