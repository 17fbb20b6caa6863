"""Trainable angles and biases of the quantum layers, in the physical or the published mode.

``angles="real"`` (the default) stores real angles and biases: every gate is unitary and every
state normalised, at every step of training.

``angles="complex"`` reproduces the published PyTorch code, which stores angles and biases as
complex tensors. The optimiser then moves their real and imaginary parts independently, so the
gates ``exp(i sum theta_k P_k)`` stop being unitary and the states stop being normalised. This
mode is **not physical**. It exists to reproduce the published numbers and to measure how much
they owe to it. Initialisation in this mode: real parts standard normal, imaginary parts zero, so
training starts from the same unitary circuits as the real mode and any departure from
unitarity is learned. Outputs stay real: the real part of the complex bias is added explicitly.
"""

from __future__ import annotations

import torch
from torch import nn

from qcreep.errors import QcreepError

ANGLE_MODES = ("real", "complex")


def check_angle_mode(angles: str) -> str:
    if angles not in ANGLE_MODES:
        raise QcreepError(f"angles must be one of {', '.join(ANGLE_MODES)} "
                          f"('complex' is the non-physical published-code mode), got {angles!r}")
    return angles


def check_path(path: str) -> str:
    """A layer's simulation path: ``"fast"`` or ``"reference"``."""
    if path not in ("fast", "reference"):
        raise QcreepError(f"path must be 'fast' or 'reference', got {path!r}")
    return path


def make_parameter(shape, angles: str, dtype, device) -> nn.Parameter:
    """Standard normal values (the published initialisation); complex mode adds a zero imaginary part."""
    real_dtype = dtype or torch.get_default_dtype()
    if real_dtype not in (torch.float32, torch.float64):
        raise QcreepError(f"quantum layers take dtype float32 or float64, got {real_dtype}")
    values = torch.randn(shape, dtype=real_dtype, device=device)
    if angles == "complex":
        values = torch.complex(values, torch.zeros_like(values))
    return nn.Parameter(values)


def real_bias(bias: torch.Tensor) -> torch.Tensor:
    """The bias added to a real output: itself, or its real part (taken explicitly) in complex mode."""
    return bias.real if bias.is_complex() else bias


def real_dtype_of(param: torch.Tensor) -> torch.dtype:
    return param.real.dtype if param.is_complex() else param.dtype
