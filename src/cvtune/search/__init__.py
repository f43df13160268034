"""The optimizer: search space (candidates of registered passes), trial runner (child processes), SQLite store of
typed trials, strategies, Pareto front, export.

`optimize(OptimizeConfig(...)) -> OptimizeResult` is the library entry point; `cvtune optimize` calls it.
"""

from ..budget import Budget, parse_duration
from .goals import OBJECTIVES, Objective, get_objective
from .optimizer import OptimizeConfig, OptimizeResult, optimize
from .pareto import pareto_front
from .records import BuiltModel, Measurement, MetricResult, Trial
from .space import Candidate, SpaceConfig, Transforms, baseline_candidate, build_space
from .store import Store

__all__ = ["OBJECTIVES", "Budget", "BuiltModel", "Candidate", "Measurement", "MetricResult", "Objective",
           "OptimizeConfig", "OptimizeResult", "SpaceConfig", "Store", "Transforms", "Trial", "baseline_candidate",
           "build_space", "get_objective", "optimize", "pareto_front", "parse_duration"]
