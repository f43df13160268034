"""Techniques as registered passes (see base.py). Importing this package registers the built-in ones:
simplify, channel_prune, channel_allocate, sparsify, int8_static, int8_dynamic, fp16, nncf_int8, nncf_int8_ac."""

from ..data.calibration import CalibrationNeed
from . import channel_allocate, channel_prune, nncf, quantize, simplify, sparsify  # noqa: F401 - registers the built-in passes
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
from .build import apply_passes, build_file, check_order, output_suffix, save_built
from .channel_allocate import ChannelAllocate
from .channel_prune import ChannelPrune
from .nncf import NncfInt8, NncfInt8AccuracyControl
from .quantize import Fp16, Int8Dynamic, Int8Static
from .simplify import Simplify
from .sparsify import Sparsify

__all__ = ["PASSES", "BuildContext", "CalibrationNeed", "ChannelAllocate", "ChannelPrune", "Fp16", "Int8Dynamic",
           "Int8Static", "NncfInt8", "NncfInt8AccuracyControl", "Pass", "PassOutput", "Simplify", "Sparsify",
           "apply_passes", "build_file", "check_order", "get_pass", "output_suffix", "pass_choice", "pass_from_dict",
           "register", "save_built", "slots"]
