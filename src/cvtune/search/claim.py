"""Check the claim: the exported answer is evaluated again through its deploy.json, loaded with
`cvtune.load_deployed` (the code path users run), on the evaluation split, in a child process. The search's
metric and this re-measurement are shown side by side; a disagreement beyond the confidence interval, or a
re-measured drop over the budget, is a failure, never "within budget"."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CvtuneError, TrialFailed
from ..isolate import run_isolated
from .records import MetricResult
from .trials import Search

CLAIM_SLACK = 1e-6  # metric values equal to this are the same claim (float noise)


@dataclass(frozen=True)
class Claim:
    """The metric the search claimed, the one re-measured through deploy.json, and whether they agree."""

    claimed: float
    claimed_ci: tuple[float | None, float | None]
    claimed_images: int
    remeasured: float | None
    remeasured_images: int
    drop: float | None  # re-measured drop against the baseline, in the budget's units
    agrees: bool  # on the images the claim was measured on, the re-measured value lies within its CI (or equals it)
    within_budget: bool
    error: str = ""
    seconds: float = 0.0
    remeasured_on_claimed: float | None = None  # the re-measurement on the claim's own images (its first n)

    @property
    def holds(self) -> bool:
        return self.agrees and self.within_budget and not self.error

    def to_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "claimed_ci": list(self.claimed_ci), "claimed_images": self.claimed_images,
                "remeasured": self.remeasured, "remeasured_images": self.remeasured_images, "drop": self.drop,
                "agrees": self.agrees, "within_budget": self.within_budget, "holds": self.holds,
                "error": self.error, "seconds": self.seconds, "remeasured_on_claimed": self.remeasured_on_claimed}


def _user_metric(deploy: Path, eval_fn: Any) -> dict[str, Any]:
    from ..deploy import load_deployed

    deployed = load_deployed(deploy)
    try:
        return {"value": float(eval_fn(deployed)), "n_images": 0}
    except Exception as exc:  # noqa: BLE001 - the user's function may raise anything
        raise CvtuneError(f"eval_fn raised {type(exc).__name__} on the exported answer: {str(exc)[:200]}") from None
    finally:
        deployed.close()


def check_claim(search: Search, deploy: Path, claimed: MetricResult, baseline: MetricResult) -> Claim:
    """Re-measure the exported answer through its deploy.json and compare with what the search claimed."""
    cfg = search.config
    started = time.perf_counter()
    ci = (claimed.ci_low, claimed.ci_high)
    try:
        if cfg.eval_fn is not None:  # the user's own metric, on the deploy.json as their code would load it
            result = _user_metric(deploy, cfg.eval_fn)
        else:
            result = run_isolated("cvtune.search.runner:_claim_child",
                                  {"deploy": str(deploy), "data": str(cfg.data), "data_kind": cfg.data_kind,
                                   "calib_fraction": cfg.calib_fraction, "seed": cfg.seed,
                                   "eval_images": search.ctx.n_eval},
                                  timeout=search.clock.timeout(), memory_limit_mb=cfg.memory_limit_mb)
    except (TrialFailed, CvtuneError) as exc:
        return Claim(claimed.value, ci, claimed.n_images, None, 0, None, False, False, str(exc),
                     time.perf_counter() - started)
    value = float(result["value"])
    same = _on_first(result, claimed.n_images)
    low = ci[0] if ci[0] is not None else claimed.value
    high = ci[1] if ci[1] is not None else claimed.value
    agrees = abs(same - claimed.value) <= CLAIM_SLACK or low - CLAIM_SLACK <= same <= high + CLAIM_SLACK
    drop = cfg.budget.drop(baseline.level, value)
    return Claim(claimed.value, ci, claimed.n_images, value, int(result.get("n_images") or 0), drop, agrees,
                 cfg.budget.allows(baseline.level, value), "", time.perf_counter() - started, same)


def _on_first(result: dict[str, Any], n: int) -> float:
    """The re-measured metric on its first `n` images (the ones a claim that settled early was measured on, in the
    same order), from the task's per-image rows; the whole value when there are no rows or no fewer images. A claim
    on 8 images and a re-measurement on 34 are different measurements: agreement is judged on the same 8, the
    budget on all 34."""
    from ..tasks.metrics import statistic_value

    rows, statistic = result.get("per_image") or [], result.get("statistic") or ""
    if not statistic or not n or n >= len(rows):
        return float(result["value"])
    return float(statistic_value(statistic, rows[:n]))
