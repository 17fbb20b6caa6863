"""Slot types: the contract of a vacancy in a network.

A slot fixes the type of data that goes in and comes out. Any registered layer for the slot's kind
can fill it, classical or quantum, and the network around it does not change. Each slot type knows
its shape arithmetic, so a model checks that every filled slot fits before any data flows.

Two kinds exist: ``conv`` (:class:`ConvSlot`, what an ``nn.Conv2d`` with ``groups=1`` does, any
kernel size, stride, padding and dilation) and ``dense`` (:class:`DenseSlot`, what an
``nn.Linear`` does). ``conv3x3`` is accepted everywhere as an older name of ``conv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qcreep.checks import check_int, is_int
from qcreep.errors import QcreepError

KIND_ALIASES = {"conv3x3": "conv"}


def canonical_kind(kind: str) -> str:
    """``kind`` under its current name (``conv3x3`` is ``conv``)."""
    return KIND_ALIASES.get(kind, kind)


def _positive_int(value, what: str, minimum: int = 1) -> int:
    return check_int(value, what, minimum)


def _pair(value, what: str, minimum: int) -> int | tuple[int, int]:
    """An int, or a pair of ints, each >= ``minimum``; a pair of equal values becomes one int."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise QcreepError(f"{what} must be an integer or a pair of integers, got {value!r}")
        a, b = (check_int(v, what, minimum) for v in value)
        return a if a == b else (a, b)
    return check_int(value, what, minimum)


def as_pair(value) -> tuple[int, int]:
    """``(v, v)`` for an int ``v``; a pair unchanged."""
    return (value, value) if is_int(value) else (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class ConvSlot:
    """Image to image: ``(C_in, H, W) -> (C_out, H', W')``, as ``nn.Conv2d(C_in, C_out, k, stride, padding,
    dilation)`` with ``groups=1`` and zero padding.

    Example:
        >>> ConvSlot(1, 32).output_shape((1, 32, 32))
        (32, 30, 30)
        >>> ConvSlot(3, 8, kernel_size=5, stride=2, padding=2).output_shape((3, 28, 28))
        (8, 14, 14)
        >>> DenseSlot(12544, 10).describe()
        'dense (12544,) -> (10,)'

    ``H' = (H + 2 padding - dilation (k - 1) - 1) // stride + 1`` and the same for ``W'``. Each of
    ``kernel_size``, ``stride``, ``padding`` and ``dilation`` is an int or an ``(h, w)`` pair.
    """

    kind: ClassVar[str] = "conv"
    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1

    def __post_init__(self):
        _positive_int(self.in_channels, "in_channels")
        _positive_int(self.out_channels, "out_channels")
        for name, minimum in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            object.__setattr__(self, name, _pair(getattr(self, name), name, minimum))

    @property
    def kernel_hw(self) -> tuple[int, int]:
        return as_pair(self.kernel_size)

    def output_shape(self, input_shape: tuple[int, ...], slot_name: str = "slot") -> tuple[int, int, int]:
        if len(input_shape) != 3:
            raise QcreepError(f"slot '{slot_name}' ({self.describe()}) takes an image (C, H, W); "
                              f"it was given shape {tuple(input_shape)}")
        c, h, w = input_shape
        if c != self.in_channels:
            raise QcreepError(f"slot '{slot_name}' ({self.describe()}) expects {self.in_channels} input "
                              f"channels; it was given shape {tuple(input_shape)}")
        sizes = []
        for size, k, s, p, d in zip((h, w), self.kernel_hw, as_pair(self.stride), as_pair(self.padding),
                                    as_pair(self.dilation)):
            sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        if min(sizes) < 1:
            kh, kw = self.kernel_hw
            dilated = "" if self.dilation == 1 else f" (dilation {self.dilation})"
            raise QcreepError(f"slot '{slot_name}' ({self.describe()}) needs an image of at least {kh}x{kw}"
                              f"{dilated} after padding; it was given shape {tuple(input_shape)}")
        return (self.out_channels, sizes[0], sizes[1])

    def describe(self) -> str:
        kh, kw = self.kernel_hw
        extra = [f"{name} {getattr(self, name)}" for name, default in (("stride", 1), ("padding", 0), ("dilation", 1))
                 if getattr(self, name) != default]
        return (f"conv {kh}x{kw} ({self.in_channels}, H, W) -> ({self.out_channels}, H', W')"
                + (", " + ", ".join(extra) if extra else ""))


def Conv3x3Slot(in_channels: int, out_channels: int, stride=1, padding=0) -> ConvSlot:  # noqa: N802 - a slot type
    """The paper's slot: a :class:`ConvSlot` with a 3x3 kernel."""
    return ConvSlot(in_channels, out_channels, 3, stride, padding)


@dataclass(frozen=True)
class DenseSlot:
    """Vector to vector: ``(F_in,) -> (F_out,)``, like ``nn.Linear``."""

    kind: ClassVar[str] = "dense"
    in_features: int
    out_features: int

    def __post_init__(self):
        _positive_int(self.in_features, "in_features")
        _positive_int(self.out_features, "out_features")

    def output_shape(self, input_shape: tuple[int, ...], slot_name: str = "slot") -> tuple[int, ...]:
        """``(F_out,)``; like ``nn.Linear``, leading dimensions ``(*, F_in)`` are kept: ``(*, F_out)``."""
        shape = tuple(input_shape)
        if not shape or shape[-1] != self.in_features:
            raise QcreepError(f"slot '{slot_name}' ({self.describe()}) expects ({self.in_features},) "
                              f"features; it was given shape {shape}")
        return (*shape[:-1], self.out_features)

    def describe(self) -> str:
        return f"dense ({self.in_features},) -> ({self.out_features},)"


SLOT_KINDS: dict[str, type] = {ConvSlot.kind: ConvSlot, DenseSlot.kind: DenseSlot}
