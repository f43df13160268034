"""The optimizer: search space (candidates), trial runner (child processes), SQLite store, Pareto front, export.

`optimize(OptimizeConfig(...)) -> OptimizeResult` is the library entry point; `cvtune optimize` calls it.
"""

from .goals import OBJECTIVES, Budget, Objective, get_objective, parse_duration
from .optimizer import OptimizeConfig, OptimizeResult, optimize
from .pareto import pareto_front
from .space import Candidate, SpaceConfig, Transforms, baseline_candidate, build_space
from .store import Store

__all__ = ["OBJECTIVES", "Budget", "Candidate", "Objective", "OptimizeConfig", "OptimizeResult", "SpaceConfig",
           "Store", "Transforms", "baseline_candidate", "build_space", "get_objective", "optimize", "pareto_front",
           "parse_duration"]
