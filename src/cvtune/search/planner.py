"""The anytime search's expected-value model: which candidate to measure next.

Each candidate is described by its levers (runtime, threads, each pass, input size, batch...). The model predicts,
for a candidate, the objective's ratio against the baseline (a log-linear model: one factor per lever, starting
from the priors below and refit by ridge regression on every measured candidate), the probability that its metric
stays within the budget (one Beta belief per lever, updated with every verdict), and what measuring it costs
(build, timing and accuracy seconds, learned as they are measured). The next candidate is the one with the
highest expected gain over the best so far per second of cost. Everything is explicit: `explain()` prints it.

The priors are general facts about CPUs and runtimes (and facts this project measured, noted where they come
from), never facts about a particular model; the measurements replace them as soon as there are any.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .space import Candidate
from .strategy import Strategy, changes
from .trials import Search

if TYPE_CHECKING:
    from .measure import Outcome

# ---- priors: (objective ratio vs the baseline, P(metric within budget)) per lever ------------------------------
# Runtime families, relative to OpenCV's default engine (the baseline). ORT and OpenVINO are usually faster on x86
# CPUs (measured here on PP-OCRv4 det: ORT ~1.9x); OpenCV's classic engine was ~0.4x of the new one. Runtime and
# thread changes keep what the model computes, so their outputs nearly always match.
# OpenVINO's throughput hint splits the cores into streams, which one synchronous request cannot use.
# LiteRT runs .tflite files only, where it is the baseline itself (search/space.py baseline_candidate): 1.0.
RUNTIME_PRIOR = {"ort": 1.6, "openvino": 1.4, "openvino:throughput": 1.0, "opencv:new": 1.0, "opencv:auto": 1.0,
                 "opencv:classic": 0.6, "litert": 1.0}
# Precision passes depend on the runtime's kernels: OpenCV 5's new engine ran int8 2.5-18x SLOWER than fp32 (its
# int8 path is a reference implementation); ORT's int8 kernels use VNNI (the detector ran at 0.40x of fp32 time).
# NNCF's int8 (OpenVINO only) ran PP-OCRv4 det 1.55x OpenVINO fp32 on a loaded machine (1 thread) and 2.45x on a
# quiet one (2 threads; 3.1x ORT fp32, bench_quantize), the recognizer 1.7x, keeping hmean / line accuracy; on
# MediaPipe's selfie segmenter its output check failed (cosine 0.69): p 0.6. Its accuracy-control variant gives
# speed back for accuracy. Builds took 8 s (plain) and 11-13 s (accuracy control) on det and rec.
PRECISION_PRIOR = {("int8_static", "ort"): (1.8, 0.5), ("int8_static", "openvino"): (1.8, 0.5),
                   ("int8_static", "opencv"): (0.3, 0.5), ("int8_dynamic", "ort"): (1.1, 0.6),
                   ("int8_dynamic", "opencv"): (0.5, 0.6), ("fp16", "*"): (0.8, 0.9),
                   ("nncf_int8", "openvino"): (2.0, 0.6), ("nncf_int8_ac", "openvino"): (1.7, 0.85)}
BUILD_SECONDS_PRIOR = {"channel_prune": 30.0, "channel_allocate": 120.0, "int8_static": 20.0, "simplify": 5.0,
                       "nncf_int8": 10.0,
                       "nncf_int8_ac": 20.0}  # refit from real builds
INT8_SIZE_PRIOR = 3.5  # int8 weights: a quarter of fp32, less what stays float
SIZE_PRIOR = {"int8_static": INT8_SIZE_PRIOR, "int8_dynamic": INT8_SIZE_PRIOR, "nncf_int8": INT8_SIZE_PRIOR,
              "nncf_int8_ac": 3.0, "fp16": 1.9}
P_WITHIN_PRIOR = {"int8_static": 0.5, "int8_dynamic": 0.6, "nncf_int8": 0.6, "nncf_int8_ac": 0.85, "fp16": 0.9,
                  "sparsify": 0.6}
DEFAULT_PRIOR = (1.0, 0.8)
RIDGE = 1.0  # pull of the priors in the log-factor fit, in units of one measured candidate


@dataclass(frozen=True)
class Expectation:
    """What the model expects of one candidate, and why."""

    ratio: float  # expected objective gain over the baseline (>1 = better)
    p_within: float  # probability its metric stays within the budget
    cost_s: float  # expected seconds to measure it
    value: float  # expected log-gain over the best so far, per second
    why: str

    def to_dict(self) -> dict[str, float | str]:
        return {"ratio": self.ratio, "p_within": self.p_within, "cost_s": self.cost_s, "value": self.value,
                "why": self.why}


def runtime_family(cand: Candidate) -> str:
    rt = cand.runtime.to_dict()
    name = rt["runtime"]
    if name == "openvino" and rt.get("hint", "latency") != "latency":
        return f"openvino:{rt['hint']}"
    return f"opencv:{rt.get('engine', 'auto')}" if name == "opencv" else name


def levers(cand: Candidate) -> list[str]:
    """The changes a candidate makes against the baseline, as names of model factors."""
    out = []
    family = runtime_family(cand)
    if family not in ("opencv:auto", "opencv:new"):
        out.append(f"runtime:{family}")
    threads = getattr(cand.runtime, "threads", None)
    if threads:
        out.append(f"threads:{threads}@{family.split(':')[0]}")
    for p in cand.passes:
        if p.slot == "precision":
            out.append(f"pass:{p.label()}@{family.split(':')[0]}")
        else:
            out.append(f"pass:{p.label()}")
    if cand.input_size:
        out.append(f"size:{cand.input_size[0]}x{cand.input_size[1]}")
    if cand.input_scale != 1.0:
        out.append(f"scale:{cand.input_scale:g}")
    if cand.batch > 1:
        out.append(f"batch:{cand.batch}")
    if cand.instances > 1:
        out.append(f"instances:{cand.instances}")
    return out


def prior(lever: str, cand: Candidate, objective: str, cores: int) -> tuple[float, float]:
    """(objective ratio, P(within budget)) a lever is expected to bring before anything is measured."""
    kind, _, rest = lever.partition(":")
    if objective == "size":  # only what changes the file changes its size
        if kind != "pass":
            return 1.0, 0.97
        p = next(p for p in cand.passes if rest.startswith(p.label()))
        size = SIZE_PRIOR.get(p.name)
        if size is None:
            ratio = getattr(p, "ratio", None)
            sparsity = getattr(p, "sparsity", None)
            size = 1 / (1 - ratio) ** 2 if ratio else (1 / (1 - 0.7 * sparsity) if sparsity else 1.0)
        return size, _p_within(p)
    if kind == "runtime":
        return RUNTIME_PRIOR.get(rest, 1.0), 0.97
    if kind == "threads":
        threads = int(rest.split("@")[0])
        # the baseline uses every core; fewer threads are slower for latency (not for throughput with instances)
        return (min(threads, cores) / cores) ** 0.7 if objective == "latency" else 1.0, 1.0
    if kind == "scale":
        scale = float(rest)
        return 1 / scale ** 1.8, min(1.0, scale ** 3)
    if kind == "size":
        return 1.0, 0.6
    if kind in ("batch", "instances"):
        return (1.3 if objective == "throughput" else 0.7), 1.0
    p = next(p for p in cand.passes if rest.startswith(p.label()))
    if p.slot == "precision":
        family = rest.rpartition("@")[2]
        return PRECISION_PRIOR.get((p.name, family), PRECISION_PRIOR.get((p.name, "*"), DEFAULT_PRIOR))
    ratio = getattr(p, "ratio", None)
    if ratio:  # structured pruning: latency falls slower than FLOPs ((1-r)^2)
        return 1 / (1 - ratio) ** 1.2, _p_within(p)
    target = getattr(p, "target", None)
    if target:  # latency-driven allocation: measured -38..-51% for predicted -35/-45% on PP-OCRv4 det (ORT)
        return 1 / (1 - 0.85 * target), _p_within(p)
    if getattr(p, "max_drop", None) is not None and p.slot == "prune":
        return 1.2, 0.8
    if p.name == "simplify":
        return 1.03, 0.97
    return 1.0, _p_within(p)


def _p_within(p) -> float:
    ratio = getattr(p, "ratio", None)
    if ratio:
        return max(0.05, 1.0 - 2.0 * ratio)
    target = getattr(p, "target", None)
    if target:  # cuts where it hurts least: -35% kept hmean on det, -45% lost 4.6%
        return max(0.1, 1.0 - 1.5 * target)
    return P_WITHIN_PRIOR.get(p.name, 0.8)


@dataclass
class Beliefs:
    """What the search has learned so far: per-lever log factors and within-budget counts, and costs."""

    log_factor: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, list[bool]] = field(default_factory=dict)
    build_s: dict[str, list[float]] = field(default_factory=dict)
    timing_s: list[float] = field(default_factory=list)
    accuracy_s_per_image: list[float] = field(default_factory=list)


class ExpectedGain(Strategy):
    """Anytime order: the candidate with the highest expected gain over the best so far per second of cost next;
    candidates sharing a failed build or a runtime that cannot load their model are never proposed."""

    name = "anytime"

    def __init__(self, search: Search, space: list[Candidate]) -> None:
        super().__init__(search, space)
        import os

        self.objective = search.config.objective
        self.cores = max(1, os.cpu_count() or 1)
        self.pending = {c.key(): c for c in self.order}
        self.limit = search.config.max_trials or len(self.order)
        self.measured: dict[str, tuple[Candidate, float]] = {}  # key -> (candidate, log gain vs baseline)
        self.ruled_out: set[str] = set()
        self.beliefs = Beliefs()
        self.best_log_gain = 0.0
        self.n_eval = max(1, search.ctx.n_eval)
        self.last: dict[str, Expectation] = {}

    # ---- learning ------------------------------------------------------------------------------------------
    def tell(self, cand: Candidate, outcome: Outcome) -> None:
        """Feedback: the measured gain refits the factors; the accuracy verdict updates the beliefs."""
        self.pending.pop(cand.key(), None)
        timing = outcome.timing
        if not outcome.ok:
            self.ruled_out.add(cand.key())
            failed = outcome.accuracy if outcome.accuracy is not None and not outcome.accuracy.ok else timing
            self._rule_out_shared(cand, failed.status, failed.error)
        if outcome.gain:
            self.measured[cand.key()] = (cand, math.log(max(outcome.gain, 1e-6)))
            self._refit()
        if outcome.verdict in ("within", "outside"):
            for lever in levers(cand):
                self.beliefs.outcomes.setdefault(lever, []).append(outcome.verdict == "within")
        if outcome.promoted and outcome.gain:
            self.best_log_gain = max(self.best_log_gain, math.log(outcome.gain))
        self._learn_costs(cand, outcome)

    def _rule_out_shared(self, cand: Candidate, status: str, error: str) -> None:
        """A failed build fails every candidate built from the same passes; a probe rule-out every candidate
        running that model on the same runtime (threads aside)."""
        source_hash = self.search.ctx.source_hash
        model_key = cand.model_key(source_hash)

        def runtime(c: Candidate) -> dict:
            return {k: v for k, v in c.runtime.to_dict().items() if k not in ("threads", "inter_threads")}

        for key, other in list(self.pending.items()):
            if other.model_key(source_hash) != model_key:
                continue
            if error.startswith("build failed") or (status == "ruled_out" and runtime(other) == runtime(cand)):
                self.pending.pop(key)
                self.ruled_out.add(key)

    def _learn_costs(self, cand: Candidate, outcome: Outcome) -> None:
        b = self.beliefs
        extra = outcome.timing.extra
        if extra.get("build_s", 0) > 1 and cand.passes:
            for p in cand.passes:
                b.build_s.setdefault(p.name, []).append(extra["build_s"] / len(cand.passes))
        if extra.get("timing_s"):
            b.timing_s.append(extra["timing_s"])
        acc = outcome.accuracy
        if acc is not None and acc.ok and acc.metric and acc.metric.n_images and acc.extra.get("accuracy_s"):
            b.accuracy_s_per_image.append(acc.extra["accuracy_s"] / acc.metric.n_images)

    def _refit(self) -> None:
        """Ridge regression of log gains on lever indicators, pulled toward the priors' log factors."""
        names = sorted({lv for cand, _ in self.measured.values() for lv in levers(cand)})
        if not names:
            return
        index = {n: i for i, n in enumerate(names)}
        cands = list(self.measured.values())
        x = np.zeros((len(cands), len(names)))
        y = np.zeros(len(cands))
        for row, (cand, log_gain) in enumerate(cands):
            for lv in levers(cand):
                x[row, index[lv]] = 1.0
            y[row] = log_gain
        priors = np.array([math.log(self._prior_of(n)[0]) for n in names])
        # minimize |x w - y|^2 + RIDGE |w - priors|^2
        a = x.T @ x + RIDGE * np.eye(len(names))
        w = np.linalg.solve(a, x.T @ y + RIDGE * priors)
        self.beliefs.log_factor = {n: float(w[index[n]]) for n in names}

    def _prior_of(self, lever: str) -> tuple[float, float]:
        example = next((c for c, _ in self.measured.values() if lever in levers(c)), None) or \
            next((c for c in self.pending.values() if lever in levers(c)), None)
        return prior(lever, example, self.objective, self.cores) if example is not None else DEFAULT_PRIOR

    # ---- expectations ----------------------------------------------------------------------------------
    def expect(self, cand: Candidate) -> Expectation:
        log_ratio, p_within, parts = 0.0, 1.0, []
        for lever in levers(cand):
            ratio0, p0 = prior(lever, cand, self.objective, self.cores)
            learned = self.beliefs.log_factor.get(lever)
            factor = math.exp(learned) if learned is not None else ratio0
            seen = self.beliefs.outcomes.get(lever, [])
            p = (p0 * 2 + sum(seen)) / (2 + len(seen))  # Beta prior worth two observations
            log_ratio += math.log(factor)
            p_within *= p
            parts.append(f"{lever} x{factor:.2f}{' (measured)' if learned is not None else ''} p{p:.2f}")
        b = self.beliefs
        built = not cand.passes or self.search.store.model(cand.model_key(self.search.ctx.source_hash)) is not None
        build = 0.0 if built else sum(_mean(b.build_s.get(p.name), BUILD_SECONDS_PRIOR.get(p.name, 10.0))
                                      for p in cand.passes)
        timing = _mean(b.timing_s, 5.0)
        per_image = _mean(b.accuracy_s_per_image, 0.5)
        images = 8 if changes(cand) == 0 else min(self.n_eval, 24)  # runtime-only changes settle on one chunk
        cost = build + timing + per_image * images
        gain_over_best = max(0.0, log_ratio - self.best_log_gain)
        value = p_within * gain_over_best / max(cost, 0.1)
        return Expectation(math.exp(log_ratio), p_within, cost, value, "; ".join(parts) or "as given")

    def ranked(self) -> list[tuple[Candidate, Expectation]]:
        scored = [(c, self.expect(c)) for c in self.pending.values()]
        # highest value first; among candidates with no expected gain, the likeliest-to-be-faster first
        scored.sort(key=lambda ce: (-ce[1].value, -ce[1].ratio * ce[1].p_within, ce[0].key()))
        return scored

    def __iter__(self) -> Iterator[Candidate]:
        hooks = sorted((c for c in self.pending.values() if c.debug), key=lambda c: c.key())
        for cand in hooks:  # test hooks first, so short test searches reach them
            self.last[cand.key()] = Expectation(1.0, 1.0, 1.0, 0.0, "test hook")
            yield cand
        proposed = len(hooks)
        while self.pending and proposed < self.limit:
            cand, expectation = self.ranked()[0]
            self.last[cand.key()] = expectation
            proposed += 1
            yield cand
            self.pending.pop(cand.key(), None)
        if self.pending:
            self.stopped = f"max trials: measured {proposed} of {len(self.order)}"

    def expected(self, cand: Candidate) -> float | None:
        e = self.last.get(cand.key())
        return None if e is None else e.ratio

    def why(self, cand: Candidate) -> str:
        e = self.last.get(cand.key())
        if e is None:
            return self.name
        return (f"expected x{e.ratio:.2f} over the baseline, p(within budget) {e.p_within:.2f}, ~{e.cost_s:.0f} s: "
                f"{e.why}")

    def explain(self, limit: int = 12) -> list[str]:
        """The model's current view, best first: one line per candidate."""
        lines = [f"best so far: {math.exp(self.best_log_gain):.2f}x over the baseline; "
                 f"{len(self.measured)} measured, {len(self.ruled_out)} ruled out, {len(self.pending)} pending"]
        for cand, e in self.ranked()[:limit]:
            lines.append(f"{e.value:8.4f}/s  x{e.ratio:.2f} p{e.p_within:.2f} {e.cost_s:5.1f}s  {cand.label()}  "
                         f"[{e.why}]")
        return lines


def _mean(values: list[float] | None, default: float) -> float:
    return float(np.mean(values)) if values else default
