"""Built models and runtime probes, cached in the store: a candidate's passes are built once per model key, and
whether a runtime (engine/provider; threads do not matter) loads a built model is probed once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CvtuneError, TrialFailed
from ..runtimes import runtime_from_dict
from .build import build_model, model_file_facts
from .clock import Clock
from .context import SearchContext
from .records import BuiltModel
from .space import Candidate, canonical_json
from .store import Store


class ModelCache:
    """`path(cand)` builds (or finds) the candidate's model; `probe(...)` says whether its runtime runs it."""

    def __init__(self, ctx: SearchContext, store: Store, clock: Clock, emit: Callable[..., None]) -> None:
        self.ctx, self.store, self.clock, self.emit = ctx, store, clock, emit

    def path(self, cand: Candidate) -> tuple[Path | None, str, str]:
        """(path, model_key, error): build the candidate's model once per model key (cached in the store)."""
        ctx = self.ctx
        key = cand.model_key(ctx.source_hash)
        if not cand.passes:
            return ctx.source, key, ""
        known = self.store.model(key)
        if known is not None and (not known.ok or Path(known.path).is_file()):
            return (Path(known.path) if known.ok else None), key, known.error
        out = Path(ctx.config.out) / "models" / f"{key}.onnx"
        self.emit("build", candidate=cand, label=cand.transforms_label())
        started = time.monotonic()
        # Static models are built for their size; others are calibrated at the task's own resizing, so the
        # model a pass tuple names does not depend on which candidate asked for it first.
        size = list(cand.input_size) if cand.static else None
        hw = cand.input_size if cand.static else ctx.facts.representative_size
        passes = [p.to_dict() for p in cand.passes]
        try:
            info = build_model(
                ctx.source, out, passes, static_size=size,
                calib_images=[str(s.path) for s in ctx.calib.samples[:ctx.config.calib_images]],
                task=ctx.task_spec().to_dict(), input_shape=[1, 3, int(hw[0]), int(hw[1])],
                timeout=self.clock.timeout(), memory_limit_mb=ctx.config.memory_limit_mb)
        except (TrialFailed, CvtuneError) as exc:
            self.clock.check(exc)
            error = f"build failed: {exc}"
            self.store.record_model(BuiltModel(key, tuple(passes), str(out), "failed", error,
                                               seconds=time.monotonic() - started))
            return None, key, error
        self.store.record_model(BuiltModel(key, tuple(passes), str(out), "ok", "", info, time.monotonic() - started))
        return out, key, ""

    def probe(self, path: Path, model_key: str, cand: Candidate) -> tuple[bool, str]:
        """Does this runtime (engine/provider; threads do not matter) load and run this model? Cached."""
        from ..probe import probe_runtimes

        runtime = cand.runtime.to_dict()
        runtime.pop("threads", None)
        runtime_key = canonical_json(runtime)
        known = self.store.probe(model_key, runtime_key)
        if known is not None:
            return known
        shape = tuple(self.ctx.input_shape(cand))
        result = probe_runtimes(path, [runtime_from_dict(runtime)], (1, *shape[1:]),
                                timeout=self.clock.timeout(cap=60.0))[0]
        if not result.ok:
            self.clock.check(TrialFailed(result.error))
        self.store.record_probe(model_key, runtime_key, result.ok, result.error)
        return result.ok, result.error

    def size(self, path: Path, model_key: str) -> int:
        """The deflate-compressed size of a model (what the size objective minimizes)."""
        known = self.store.model(model_key)
        info: dict[str, Any] = known.info if known is not None else {}
        if "compressed_bytes" not in info:
            info = model_file_facts(path)
        return int(info["compressed_bytes"])
