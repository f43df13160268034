"""Compression: unstructured sparsification (sparsify) and structured channel pruning (plan, channels,
reconstruct), with per-layer sensitivity analysis. `prune_file` is the one entry point the CLI uses."""

from .allocate import Allocation, LatencyAllocation, allocate_channels, latency_allocation, verify_allocation
from .channels import IMPORTANCE, cut_channels, plan_channels
from .cost import CostModel, LayerProfile, profile_cost, profile_layers
from .curves import ChannelCurves, channel_curves
from .plan import ChannelGroup, PruningPlan, SkippedGroup
from .prune import PRUNE_METHODS, ChannelConfig, ChannelReport, prune_channels, prune_file
from .reconstruct import ReconstructionReport, reconstruct
from .sensitivity import SensitivityResult, allocate, analyze_sensitivity
from .sparsify import METHODS, SparsifyConfig, SparsityReport, sparsify, sparsify_file

__all__ = [
    "Allocation", "ChannelCurves", "CostModel", "LatencyAllocation", "LayerProfile", "allocate_channels",
    "channel_curves", "latency_allocation",
    "profile_cost", "profile_layers", "verify_allocation",
    "IMPORTANCE", "METHODS", "PRUNE_METHODS", "ChannelConfig", "ChannelGroup", "ChannelReport", "PruningPlan",
    "ReconstructionReport", "SensitivityResult", "SkippedGroup", "SparsifyConfig", "SparsityReport", "allocate",
    "analyze_sensitivity", "cut_channels", "plan_channels", "prune_channels", "prune_file", "reconstruct",
    "sparsify", "sparsify_file",
]
