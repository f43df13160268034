"""Built models and runtime probes, cached in the store: a candidate's passes are built once per model key (and
kept in cvtune's cache, so a repeated or resumed search in another folder starts measuring at once), and whether a
runtime (engine/provider; threads do not matter) loads a built model and returns the original's outputs is probed
once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CvtuneError, OutputError, TrialFailed
from ..files import cache_root, copy_model, model_present
from ..passes import output_suffix
from ..probe import probe_runtimes
from ..runtimes import make_runtime, runtime_from_dict
from .build import build_model, model_file_facts
from .clock import Clock
from .context import SearchContext
from .records import BuiltModel
from .space import Candidate, canonical_json, short_hash
from .store import Store

BUILD_CACHE_FORMAT = 2  # bump when a pass's output for the same inputs changes (2: stamped preprocessing)


class ModelCache:
    """`path(cand)` builds (or finds) the candidate's model; `probe(...)` says whether its runtime runs it."""

    def __init__(self, ctx: SearchContext, store: Store, clock: Clock, emit: Callable[..., None]) -> None:
        self.ctx, self.store, self.clock, self.emit = ctx, store, clock, emit
        self._reference: dict[tuple[int, ...], list[list[int]] | None] = {}
        self._calib_identity: list | None = None

    def path(self, cand: Candidate) -> tuple[Path | None, str, str]:
        """(path, model_key, error): build the candidate's model once per model key (cached in the store). A
        TFLite/TF model runs as given where the runtime reads it (OpenCV, LiteRT) and as its ONNX conversion
        everywhere else."""
        ctx = self.ctx
        key = cand.model_key(ctx.source_hash)
        if not cand.passes:
            if cand.runtime.reads(ctx.source) or ctx.source.suffix.lower() == ".onnx":
                return ctx.source, key, ""
            from ..convert import ensure_onnx

            try:
                return ensure_onnx(ctx.source), key, ""
            except CvtuneError as exc:
                return None, key, f"conversion to ONNX failed: {exc}"
        known = self.store.model(key)
        if known is not None and (not known.ok or model_present(known.path)):
            return (Path(known.path) if known.ok else None), key, known.error
        # an OpenVINO IR (NNCF int8) is an .xml with its .bin beside it: both are built, cached and copied together
        out = Path(ctx.config.out) / "models" / f"{key}{output_suffix(cand.passes)}"
        passes = [p.to_dict() for p in cand.passes]
        cached = self._cached_build(cand)
        if model_present(cached):  # built by an earlier search from the same model, passes and calibration images
            copy_model(cached, out)
            info = {**model_file_facts(out), "cached_from": str(cached)}
            self.store.record_model(BuiltModel(key, tuple(passes), str(out), "ok", "", info, 0.0))
            return out, key, ""
        self.emit("build", candidate=cand, label=cand.transforms_label())
        started = time.monotonic()
        # Static models are built for their size; others are calibrated at the task's own resizing, so the
        # model a pass tuple names does not depend on which candidate asked for it first.
        size = list(cand.input_size) if cand.static else None
        hw = cand.input_size if cand.static else ctx.facts.representative_size
        try:
            info = build_model(
                ctx.source, out, passes, static_size=size,
                calib_images=[str(s.path) for s in ctx.calib.samples[:ctx.config.calib_images]],
                task=ctx.build_spec().to_dict(), input_shape=ctx.tensor_shape(1, int(hw[0]), int(hw[1])),
                timeout=self.clock.timeout(), memory_limit_mb=ctx.config.memory_limit_mb)
        except (TrialFailed, CvtuneError) as exc:
            self.clock.check(exc)
            error = f"build failed: {exc}"
            self.store.record_model(BuiltModel(key, tuple(passes), str(out), "failed", error,
                                               seconds=time.monotonic() - started))
            return None, key, error
        self.store.record_model(BuiltModel(key, tuple(passes), str(out), "ok", "", info, time.monotonic() - started))
        try:  # keep it for the next search (a full disk here costs only the reuse)
            copy_model(out, cached)
        except (OSError, OutputError):
            pass
        return out, key, ""

    def _cached_build(self, cand: Candidate) -> Path:
        """Where a build of `cand` is cached across searches: keyed by the model, the passes (with the static
        size), the calibration images (paths, sizes, modification times) and the task that preprocesses them."""
        if self._calib_identity is None:
            images = []
            for sample in self.ctx.calib.samples[:self.ctx.config.calib_images]:
                stat = Path(sample.path).stat()
                images.append([str(Path(sample.path).resolve()), stat.st_size, stat.st_mtime_ns])
            self._calib_identity = images
        key = short_hash({"model": cand.model_key(self.ctx.source_hash), "calibration": self._calib_identity,
                          "task": self.ctx.build_spec().to_dict(), "format": BUILD_CACHE_FORMAT}, 24)
        return cache_root() / "builds" / f"{key}{output_suffix(cand.passes)}"

    def probe(self, path: Path, model_key: str, cand: Candidate) -> tuple[bool, str]:
        """Does this runtime (engine/provider; threads do not matter) load and run this model, and return the
        outputs the original does (as many, of the same shapes)? Cached."""
        runtime = cand.runtime.to_dict()
        runtime.pop("threads", None)
        runtime_key = canonical_json(runtime)
        known = self.store.probe(model_key, runtime_key)
        if known is not None:
            return known
        shape = (1, *self.ctx.input_shape(cand)[1:])
        result = probe_runtimes(path, [runtime_from_dict(runtime)], shape, timeout=self.clock.timeout(cap=60.0))[0]
        if not result.ok:
            self.clock.check(TrialFailed(result.error))
        ok, error = result.ok, result.error
        if ok:  # same outputs as the original, or it cannot be compared with it (never chosen)
            from ..probe import check_outputs

            size = cand.input_size or self.ctx.task_shape(cand.input_scale)  # the original's ONNX form's layout
            reference = self.reference_outputs(tuple(self.ctx.tensor_shape(1, int(size[0]), int(size[1]))))
            problem = check_outputs(reference, result.output_shapes) if reference is not None \
                else result.output_problem
            if problem:
                ok, error = False, f"its outputs differ from the original's: {problem}"
        self.store.record_probe(model_key, runtime_key, ok, error)
        return ok, error

    def reference_outputs(self, shape: tuple[int, ...]) -> list[list[int]] | None:
        """The original model's output shapes at `shape`: what its file declares, else what ONNX Runtime returns
        for it (OpenCV's default engine can drop an output of some TFLite models: never the reference)."""
        if shape not in self._reference:
            from ..convert import ensure_onnx
            from ..probe import declared_output_shapes

            reference = declared_output_shapes(self.ctx.source, shape)
            if reference is None:
                run = probe_runtimes(ensure_onnx(self.ctx.source), [make_runtime("ort")], shape,
                                     timeout=self.clock.timeout(cap=60.0))[0]
                reference = run.output_shapes if run.ok else None
            self._reference[shape] = reference
        return self._reference[shape]

    def size(self, path: Path, model_key: str) -> int:
        """The deflate-compressed size of a model (what the size objective minimizes)."""
        known = self.store.model(model_key)
        info: dict[str, Any] = known.info if known is not None else {}
        if "compressed_bytes" not in info:
            info = model_file_facts(path)
        return int(info["compressed_bytes"])
