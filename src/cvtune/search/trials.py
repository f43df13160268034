"""The state of one search and how it measures one candidate: build its model once (cached), probe the runtime
(cached), then a trial in a child process, committed to the store. Strategy (which candidates, in which order)
lives in strategy.py; the final back-to-back timing in final.py."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CvtuneError, DatasetError, ModelError, TrialFailed, UsageError
from ..runtimes import make_runtime, runtime_from_dict
from .build import build_model
from .config import OptimizeConfig
from .goals import Objective, get_objective
from .runner import Rung, TrialSpec, eval_split, make_task, run_trial, summarize_timing
from .space import (
    TASK_SCALE_OPTIONS,
    Candidate,
    ModelFacts,
    Transforms,
    baseline_candidate,
    canonical_json,
    scaled_task_options,
)
from .store import Store

EventFn = Callable[..., None]
TIMING_SHAPES = 8  # evaluation images whose input shapes the latency is timed over
FINAL_ROUNDS = 2  # the final timing alternates baseline and chosen this many times each


class _OutOfTime(Exception):
    """The wall-clock budget ran out (the interrupted trial is not recorded: a resume measures it)."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _noop(*_: Any, **__: Any) -> None:
    return None


class Search:
    """The state of one optimize run. Use `optimize(config)`; this class keeps the steps small and testable."""

    def __init__(self, config: OptimizeConfig, store: Store | None = None, on_event: EventFn | None = None) -> None:
        self.config = config
        self.store = store  # type: ignore[assignment]  # set before setup()
        self.emit = on_event or _noop
        self.objective: Objective = get_objective(config.objective)
        self.started = time.monotonic()
        # The search phases stop `final_reserve_s` before the end of the time budget: the back-to-back timing of
        # the baseline and the chosen candidate always runs, inside the budget.
        self.end = self.started + config.time_budget_s if config.time_budget_s else None
        self.final_reserve_s = min(15.0, 0.1 * config.time_budget_s) if config.time_budget_s else 0.0
        self.deadline = self.end - self.final_reserve_s if self.end is not None else None
        self.source = Path(config.model).resolve()
        self.source_hash = file_sha256(self.source)
        self.notes: list[str] = []

    # ---- setup --------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load and check the model, task and data (before anything is written to OUT)."""
        from ..model import Model
        from ..tasks import TASKS

        cfg = self.config
        if cfg.task not in TASKS:
            raise UsageError(f"unknown task '{cfg.task}'; choose one of: {', '.join(TASKS) or '(none installed)'}")
        model = Model.load(self.source)
        calib, evaluation = eval_split(str(cfg.data), cfg.data_kind, cfg.calib_fraction, cfg.seed)
        kinds = getattr(TASKS[cfg.task], "dataset_kinds", ())
        if kinds and evaluation.kind not in kinds and "images" not in kinds:
            raise DatasetError(f"task '{cfg.task}' needs {' or '.join(kinds)} data, but {cfg.data} is laid out as "
                               f"'{evaluation.kind}'; point --data at the right folder or pass --kind")
        self.calib, self.evaluation = calib, evaluation
        self.n_eval = len(evaluation) if cfg.eval_images is None else min(cfg.eval_images, len(evaluation))
        screen = min(cfg.screen_images, self.n_eval)
        self.rungs = {"screen": Rung("screen", screen, warmup=2, min_runs=5, min_time_s=0.3),
                      "full": Rung("full", self.n_eval, warmup=3, min_runs=10, min_time_s=1.0)}
        self.facts = self._model_facts(model)
        self._check_fit()

    def reserve_final(self, baseline_full: dict[str, Any], rounds: int = FINAL_ROUNDS) -> None:
        """Size the time kept for the final back-to-back timing from what the baseline's timing really took
        (its trial minus its evaluation), at most a quarter of the budget."""
        if self.end is None or baseline_full.get("status") != "ok":
            return
        timing = max(1.0, (baseline_full.get("seconds") or 0) - (baseline_full["details"].get("eval_seconds") or 0))
        self.final_reserve_s = min(0.25 * self.config.time_budget_s, max(self.final_reserve_s, 2 * rounds * timing))
        self.deadline = self.end - self.final_reserve_s

    def expected_seconds(self, row: dict[str, Any], base_screen: dict[str, Any], base_full: dict[str, Any]) -> float:
        """How long re-measuring a screened candidate on the full split should take: its screening time scaled
        like the baseline's went from screening to the full split."""
        ratio = (base_full.get("seconds") or 0) / max(base_screen.get("seconds") or 0, 1e-3)
        return (row.get("seconds") or 0) * max(1.0, ratio)

    def _check_fit(self) -> None:
        """One image through the model as given (ONNX Runtime, else OpenCV; in a child): a model the task does
        not fit is one clear error before anything is written, not a search full of failed trials."""
        errors = []
        for runtime in (make_runtime("ort"), make_runtime("opencv")):
            try:
                self.run_child(Candidate(Transforms(), runtime), self.source,
                               Rung("fit", 1, warmup=0, min_runs=1, min_time_s=0.0), measure_metric=True,
                               timeout=min(120.0, self.config.trial_timeout_s))
                return
            except TrialFailed as exc:
                errors.append(str(exc))
        raise ModelError(f"{self.source.name} does not run with task '{self.config.task}' on {self.config.data}: "
                         f"{errors[0]}")

    def setup(self) -> bool:
        """Record in the store what this run measures; True when it resumes an earlier run of the same."""
        cfg, calib, evaluation = self.config, self.calib, self.evaluation
        screen = self.rungs["screen"].images
        identity = {"model_sha256": self.source_hash, "task": cfg.task, "task_options": cfg.task_options,
                    "data": str(Path(cfg.data).resolve()), "data_kind": evaluation.kind,
                    "n_samples": len(calib) + len(evaluation), "calib_fraction": cfg.calib_fraction,
                    "seed": cfg.seed, "screen_images": screen, "eval_images": self.n_eval}
        resumed = self.store.check_identity(identity)
        self.store.set_meta("config", cfg.to_dict())
        from ..report.data import machine_info

        self.store.set_meta("machine", machine_info())
        self.store.set_meta("facts", {"representative_size": self.facts.representative_size,
                                      "resizable": self.facts.resizable, "model_name": self.source.name})
        return resumed

    def _model_facts(self, model) -> ModelFacts:
        """The input size the task feeds for typical images (most common over a few), and whether other sizes
        are allowed (dynamic H, W in the model and no fixed size in its preprocessing)."""
        info = model.inputs[0]
        dynamic = set(info.dynamic_dims)
        task = make_task(self.config.task, str(self.source), None, self.config.task_options)
        self.preprocessing = task.preprocessing.to_dict()
        option = TASK_SCALE_OPTIONS.get(self.config.task)
        self.scale_default = getattr(task, option, None) if option else None
        self._shapes: dict[float, list[tuple[int, int]]] = {}
        representative = self.task_shape(1.0, task)
        preprocessing = task.preprocessing
        # Fidelity feeds the reference the same tensor, so a smaller input would cost nothing there: keep sizes out.
        resizable = {2, 3} <= dynamic and preprocessing.input_size is None and self.config.task != "fidelity"
        return ModelFacts(representative, resizable, max(1, preprocessing.size_multiple), 0 in dynamic,
                          scalable=self.scale_default is not None)

    def task_shapes(self, scale: float, task=None) -> list[tuple[int, int]]:
        """The (H, W) the task feeds each of the first evaluation images at a resize scale (per-image resizing
        gives several shapes: latency is timed over this mix, not one made-up size)."""
        from ..data.base import read_image

        if scale in self._shapes:
            return self._shapes[scale]
        if task is None:
            task = make_task(self.config.task, str(self.source), None, self.task_options(scale))
        shapes: list[tuple[int, int]] = []
        for sample in self.evaluation.samples[:TIMING_SHAPES]:
            image = read_image(sample.path)
            if image is not None:
                tensor = task.preprocess(image)[0]
                shapes.append((int(tensor.shape[2]), int(tensor.shape[3])))
        if not shapes:
            raise DatasetError(f"none of the first evaluation images in {self.config.data} could be read")
        self._shapes[scale] = shapes
        return shapes

    def task_shape(self, scale: float, task=None) -> tuple[int, int]:
        """The most common of `task_shapes` (what a static model is built for, and what reports show)."""
        return Counter(self.task_shapes(scale, task)).most_common(1)[0][0]

    def task_options(self, scale: float = 1.0) -> dict[str, Any]:
        return scaled_task_options(self.config.task, self.config.task_options, self.scale_default, scale)

    # ---- helpers ------------------------------------------------------------------------------------------
    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def phase_deadline(self, share: float) -> float | None:
        return None if self.deadline is None else self.started + share * (self.deadline - self.started)

    def input_shape(self, cand: Candidate) -> list[int]:
        size = cand.transforms.input_size or self.task_shape(cand.transforms.input_scale)
        return [cand.batch, 3, int(size[0]), int(size[1])]

    def input_shapes(self, cand: Candidate) -> list[list[int]]:
        """Every input shape the timing cycles through: one for a fixed size, the task's mix otherwise."""
        if cand.transforms.input_size:
            return [self.input_shape(cand)]
        return [[cand.batch, 3, h, w] for h, w in self.task_shapes(cand.transforms.input_scale)]

    def model_path(self, cand: Candidate) -> tuple[Path | None, str, str]:
        """(path, model_key, error): build the candidate's model once per transform tuple (cached in the store)."""
        t = cand.transforms
        key = t.model_key(self.source_hash)
        if not t.touches_model():
            return self.source, key, ""
        known = self.store.model(key)
        if known is not None and (known["status"] != "ok" or Path(known["path"]).is_file()):
            return (Path(known["path"]) if known["status"] == "ok" else None), key, known["error"]
        out = Path(self.config.out) / "models" / f"{key}.onnx"
        self.emit("build", candidate=cand, label=t.label())
        started = time.monotonic()
        # Static models are built for their size; others are calibrated at the task's own resizing, so the
        # model a transform tuple names does not depend on which candidate asked for it first.
        size = list(t.input_size) if t.static else None
        hw = t.input_size if t.static else self.facts.representative_size
        try:
            info = build_model(
                self.source, out, t.model_fields(),
                calib_images=[str(s.path) for s in self.calib.samples[:self.config.calib_images]],
                task=self.config.task, task_options=self.config.task_options, input_size=size,
                input_shape=[1, 3, int(hw[0]), int(hw[1])], timeout=self._timeout(),
                memory_limit_mb=self.config.memory_limit_mb,
                size_multiple=self.facts.size_multiple if self.facts.resizable else None)
        except (TrialFailed, CvtuneError) as exc:
            self._check_deadline(exc)
            self.store.record_model(key, t.model_fields(), str(out), "failed", f"build failed: {exc}",
                                    seconds=time.monotonic() - started)
            return None, key, f"build failed: {exc}"
        self.store.record_model(key, t.model_fields(), str(out), "ok", "", info, time.monotonic() - started)
        return out, key, ""

    def _timeout(self) -> float:
        left = self.time_left()
        return self.config.trial_timeout_s if left is None else max(5.0, min(self.config.trial_timeout_s, left))

    def _check_deadline(self, exc: Exception) -> None:
        """A child killed because the whole search ran out of time is not the candidate's failure."""
        left = self.time_left()
        if left is not None and left <= 1.0 and "timed out" in str(exc):
            raise _OutOfTime() from None

    def probe(self, path: Path, model_key: str, cand: Candidate) -> tuple[bool, str]:
        """Does this runtime (engine/provider; threads do not matter) load and run this model? Cached."""
        from ..probe import probe_runtimes

        runtime = cand.runtime.to_dict()
        runtime.pop("threads", None)
        runtime_key = canonical_json(runtime)
        known = self.store.probe(model_key, runtime_key)
        if known is not None:
            return known
        shape = tuple(self.input_shape(cand))
        result = probe_runtimes(path, [runtime_from_dict(runtime)], (1, *shape[1:]),
                                timeout=min(60.0, self._timeout()))[0]
        if not result.ok:
            self._check_deadline(TrialFailed(result.error))
        self.store.record_probe(model_key, runtime_key, result.ok, result.error)
        return result.ok, result.error

    # ---- one trial ----------------------------------------------------------------------------------------
    def measure(self, cand: Candidate, rung: Rung, *, metric_rung: str | None = None,
                rung_name: str | None = None) -> dict[str, Any]:
        """Measure `cand` at `rung` unless the store already has it; commit the row; return it."""
        name = rung_name or rung.name
        existing = self.store.trial(cand.key(), name)
        if existing is not None:
            return existing
        if self.deadline is not None and self.time_left() <= 0:
            raise _OutOfTime()
        started = time.time()
        row: dict[str, Any] = {"key": cand.key(), "rung": name, "candidate": cand.to_dict(), "label": cand.label(),
                               "started": started, "details": {}}
        self.emit("trial_start", candidate=cand, rung=name)
        path, model_key, error = self.model_path(cand)
        metric_key = cand.metric_key(self.source_hash)
        row["details"] = {"metric_key": metric_key, "model_key": model_key,
                          "input_shape": self.input_shape(cand), "rung_images": rung.images}
        if path is None:
            return self._record(row, "failed", error)
        ok, probe_error = self.probe(path, model_key, cand)
        if not ok:
            return self._record(row, "ruled_out", f"ruled out by probe: {probe_error}")
        known = self.store.metric_for(metric_key, metric_rung or name)
        try:
            result = self.run_child(cand, path, rung, measure_metric=known is None)
        except TrialFailed as exc:
            self._check_deadline(exc)
            return self._record(row, "failed", str(exc))
        return self._finish(row, cand, path, model_key, result, known)

    def run_child(self, cand: Candidate, path: Path, rung: Rung, *, measure_metric: bool,
                  timeout: float | None = None) -> dict[str, Any]:
        """One child process: the metric (when asked) and the timing of `cand` at `rung`."""
        spec = TrialSpec(
            model=str(path), source_model=str(self.source), runtime=cand.runtime.to_dict(), task=self.config.task,
            task_options=self.task_options(cand.transforms.input_scale),
            input_size=list(cand.transforms.input_size) if cand.transforms.input_size else None,
            data=str(self.config.data), data_kind=self.config.data_kind, calib_fraction=self.config.calib_fraction,
            seed=self.config.seed, eval_images=rung.images, input_shape=self.input_shape(cand),
            timing_shapes=self.input_shapes(cand),
            warmup=rung.warmup, min_runs=rung.min_runs, min_time_s=rung.min_time_s,
            measure_metric=measure_metric, instances=cand.instances, debug=cand.transforms.debug)
        return run_trial(spec, timeout=timeout or self._timeout(), memory_limit_mb=self.config.memory_limit_mb)

    def _finish(self, row: dict[str, Any], cand: Candidate, path: Path, model_key: str, result: dict[str, Any],
                known: dict[str, Any] | None) -> dict[str, Any]:
        row.update(summarize_timing(result["timing"], cand.batch))
        row["details"].update(runs=row.pop("runs"), load_ms=row.pop("load_ms"), peak_rss_mb=row.pop("peak_rss_mb"),
                              timing_shapes=result["timing"].get("shapes", 1))
        if known is not None:
            row.update(metric=known["metric"], metric_ci_low=known["metric_ci_low"],
                       metric_ci_high=known["metric_ci_high"], metric_name=known["metric_name"],
                       n_images=known["n_images"],
                       metric_from=known["metric_from"] or f"{known['key']}@{known['rung']}")
        else:
            m = result["metric"]
            ci = m.get("ci95") or [None, None]
            row.update(metric=m["value"], metric_ci_low=ci[0], metric_ci_high=ci[1], metric_name=m["metric"],
                       n_images=m["n_images"])
            row["details"]["metric_details"] = m.get("details", {})
            row["details"]["eval_seconds"] = m.get("seconds")
        row["size_bytes"] = self._size(path, model_key)
        row["seconds"] = result["seconds"]
        return self._record(row, "ok", "")

    def _size(self, path: Path, model_key: str) -> int:
        info = (self.store.model(model_key) or {}).get("info") or {}
        if "compressed_bytes" not in info:
            from .build import model_facts

            info = model_facts(path)
        return int(info["compressed_bytes"])

    def _record(self, row: dict[str, Any], status: str, error: str) -> dict[str, Any]:
        row["status"] = status
        row["error"] = error
        row["finished"] = time.time()
        row.setdefault("seconds", row["finished"] - row["started"])
        self.store.record_trial(row)
        stored = self.store.trial(row["key"], row["rung"]) or row
        self.emit("trial_done", row=stored)
        return stored

    # ---- phases -------------------------------------------------------------------------------------------
    def run_baseline(self, rung: Rung) -> dict[str, Any]:
        """The model as given with OpenCV's defaults; if OpenCV cannot run it, ONNX Runtime's defaults."""
        for cand in (baseline_candidate(), Candidate(Transforms(), make_runtime("ort"))):
            row = self.measure(cand, rung)
            if row["status"] == "ok":
                if cand != baseline_candidate():
                    self.notes.append(f"OpenCV could not run the model as given ({self._baseline_error()}); "
                                      f"the baseline is ONNX Runtime with its defaults")
                return row
        raise ModelError(f"the model as given does not run with task '{self.config.task}' on {self.config.data}: "
                         f"{row['error']}")

    def _baseline_error(self) -> str:
        row = self.store.trial(baseline_candidate().key(), "screen")
        return row["error"] if row else ""

    def feasible(self, row: dict[str, Any], baseline: dict[str, Any], *, slack: float = 0.0) -> bool:
        return row["status"] == "ok" and row["metric"] is not None and \
            self.config.budget.allows(baseline["metric"], row["metric"], slack=slack)

    def cost(self, row: dict[str, Any]) -> float:
        return self.objective.sort_key(self.objective.value(row))
