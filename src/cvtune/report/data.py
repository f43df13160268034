"""Everything a report shows, read back from OUT/trials.sqlite (so `cvtune report OUT` regenerates it anywhere):
the run's config, its result, every trial, the built models, and the machine it was measured on."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..search.store import Store


@dataclass
class RunData:
    out: Path
    config: dict[str, Any]
    result: dict[str, Any] | None
    facts: dict[str, Any]
    machine: dict[str, Any]
    trials: list[dict[str, Any]]
    models: list[dict[str, Any]] = field(default_factory=list)

    @property
    def budget(self):
        from ..search.goals import Budget

        return Budget.from_dict(self.config.get("budget", {"value": 0.01, "relative": True}))

    @property
    def objective(self):
        from ..search.goals import get_objective

        return get_objective(self.config.get("objective", "latency"))

    def best_rows(self) -> list[dict[str, Any]]:
        """One row per candidate: its most thorough successful measurement (full over screen), else its failure."""
        order = {"screen": 0, "full": 1}
        chosen: dict[str, dict[str, Any]] = {}
        for row in self.trials:
            if row["rung"].startswith("final"):
                continue
            have = chosen.get(row["key"])
            rank = (row["status"] == "ok", order.get(row["rung"], 0))
            if have is None or rank > (have["status"] == "ok", order.get(have["rung"], 0)):
                chosen[row["key"]] = row
        return list(chosen.values())


def machine_info() -> dict[str, Any]:
    """CPU, cores and library versions (cvtune.runtimes.devices when present, else what platform knows)."""
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        from ..runtimes.devices import detect

        report = detect().to_dict()
        cpu = report.get("cpu", {})
        info.update(cpu=cpu.get("model"), cpu_features=cpu.get("features"), physical_cores=cpu.get("physical_cores"),
                    logical_cores=cpu.get("logical_cores"), usable_cores=cpu.get("usable_cores"))
    except Exception:  # noqa: BLE001 - the report must not fail for want of device facts
        info.update(cpu=platform.processor() or platform.machine())
    versions = {}
    for module in ("cvtune", "cv2", "onnxruntime", "onnx", "numpy", "optuna", "openvino"):
        try:
            mod = __import__(module)
            versions["opencv" if module == "cv2" else module] = getattr(mod, "__version__", "?")
        except Exception:  # noqa: BLE001 - optional modules
            continue
    info["versions"] = versions
    return info


def load_run(out: str | Path) -> RunData:
    out = Path(out)
    with Store.open(out, create=False) as store:
        return RunData(out=out, config=store.get_meta("config", {}), result=store.get_meta("result"),
                       facts=store.get_meta("facts", {}), machine=store.get_meta("machine") or {},
                       trials=store.trials(), models=store.models())
