"""Techniques as registered passes (see base.py). Importing this package registers the built-in ones:
simplify, channel_prune, channel_allocate, sparsify, int8_static, int8_dynamic, fp16."""

from ..data.calibration import CalibrationNeed
from . import channel_allocate, channel_prune, quantize, simplify, sparsify  # noqa: F401 - registers the built-in passes
from .base import (
    PASSES,
    BuildContext,
    Pass,
    PassOutput,
    get_pass,
    pass_choice,
    pass_from_dict,
    register,
    slots,
)
from .build import apply_passes
from .channel_allocate import ChannelAllocate
from .channel_prune import ChannelPrune
from .quantize import Fp16, Int8Dynamic, Int8Static
from .simplify import Simplify
from .sparsify import Sparsify

__all__ = ["PASSES", "BuildContext", "CalibrationNeed", "ChannelAllocate", "ChannelPrune", "Fp16", "Int8Dynamic",
           "Int8Static", "Pass", "PassOutput", "Simplify", "Sparsify", "apply_passes", "get_pass", "pass_choice",
           "pass_from_dict",
           "register", "slots"]
