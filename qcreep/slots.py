"""Slot types: the contract of a vacancy in a network.

A slot fixes the type of data that goes in and comes out. Any registered layer for the slot's kind
can fill it, classical or quantum, and the network around it does not change. Each slot type knows
its shape arithmetic, so a model checks that every filled slot fits before any data flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qcreep.checks import check_int
from qcreep.errors import QcreepError


def _positive_int(value, what: str, minimum: int = 1) -> int:
    return check_int(value, what, minimum)


@dataclass(frozen=True)
class Conv3x3Slot:
    """Image to image, 3x3 kernel: ``(C_in, H, W) -> (C_out, H', W')``.

    Example:
        >>> Conv3x3Slot(1, 32).output_shape((1, 32, 32))
        (32, 30, 30)
        >>> DenseSlot(12544, 10).describe()
        'dense (12544,) -> (10,)'

    ``H' = (H + 2 * padding - 3) // stride + 1`` and the same for ``W'``, as for
    ``nn.Conv2d(C_in, C_out, 3, stride, padding)``.
    """

    kind: ClassVar[str] = "conv3x3"
    in_channels: int
    out_channels: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        _positive_int(self.in_channels, "in_channels")
        _positive_int(self.out_channels, "out_channels")
        _positive_int(self.stride, "stride")
        _positive_int(self.padding, "padding", minimum=0)

    def output_shape(self, input_shape: tuple[int, ...], slot_name: str = "slot") -> tuple[int, int, int]:
        if len(input_shape) != 3:
            raise QcreepError(f"slot '{slot_name}' ({self.describe()}) takes an image (C, H, W); "
                              f"it was given shape {tuple(input_shape)}")
        c, h, w = input_shape
        if c != self.in_channels:
            raise QcreepError(f"slot '{slot_name}' ({self.describe()}) expects {self.in_channels} input "
                              f"channels; it was given shape {tuple(input_shape)}")
        h_out = (h + 2 * self.padding - 3) // self.stride + 1
        w_out = (w + 2 * self.padding - 3) // self.stride + 1
        if h_out < 1 or w_out < 1:
            raise QcreepError(f"slot '{slot_name}' ({self.describe()}) needs an image of at least 3x3 "
                              f"after padding; it was given shape {tuple(input_shape)}")
        return (self.out_channels, h_out, w_out)

    def describe(self) -> str:
        extra = ""
        if self.stride != 1 or self.padding != 0:
            extra = f", stride {self.stride}, padding {self.padding}"
        return f"conv3x3 ({self.in_channels}, H, W) -> ({self.out_channels}, H', W'){extra}"


@dataclass(frozen=True)
class DenseSlot:
    """Vector to vector: ``(F_in,) -> (F_out,)``, like ``nn.Linear``."""

    kind: ClassVar[str] = "dense"
    in_features: int
    out_features: int

    def __post_init__(self):
        _positive_int(self.in_features, "in_features")
        _positive_int(self.out_features, "out_features")

    def output_shape(self, input_shape: tuple[int, ...], slot_name: str = "slot") -> tuple[int]:
        if tuple(input_shape) != (self.in_features,):
            raise QcreepError(f"slot '{slot_name}' ({self.describe()}) expects ({self.in_features},) "
                              f"features; it was given shape {tuple(input_shape)}")
        return (self.out_features,)

    def describe(self) -> str:
        return f"dense ({self.in_features},) -> ({self.out_features},)"


SLOT_KINDS: dict[str, type] = {Conv3x3Slot.kind: Conv3x3Slot, DenseSlot.kind: DenseSlot}
