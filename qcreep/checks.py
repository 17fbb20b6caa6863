"""Argument checks shared by every module: one definition of each, one wording of each error.

Example:
    >>> from qcreep.checks import check_int
    >>> check_int(3, "n_reps")
    3
    >>> check_int(0, "n_reps")
    Traceback (most recent call last):
    ...
    qcreep.errors.QcreepError: n_reps must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
import numbers

from qcreep.errors import QcreepError


def is_int(value) -> bool:
    """True for integers (numpy integers included), False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, what: str, minimum: int | None = 1, maximum: int | None = None, *,
              error: type[QcreepError] = QcreepError) -> int:
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``; otherwise ``error``."""
    ok = is_int(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        if minimum is not None and maximum is not None:
            bounds = f"from {minimum} to {maximum}"
        elif maximum is not None:
            bounds = f"<= {maximum}"
        else:
            bounds = f">= {minimum}"
        raise error(f"{what} must be an integer {bounds}, got {value!r}")
    return int(value)


def check_number(value, what: str, *, low: float = 0.0, low_open: bool = True, high: float = math.inf,
                 high_open: bool = True, error: type[QcreepError] = QcreepError) -> float:
    """``value`` as a ``float`` if it is a real number in the interval; otherwise ``error``."""
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads 5e-4 as a string
        except ValueError:
            pass
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise error(f"{what} must be a number in {left}{low:g}, {high:g}{right}, got {value!r}")
    return float(value)


def check_choice(value, what: str, choices, *, note: str = "", error: type[QcreepError] = QcreepError):
    """``value`` if it is one of ``choices``; otherwise ``error`` listing them."""
    if value not in tuple(choices):
        extra = f" ({note})" if note else ""
        raise error(f"{what} must be one of {', '.join(map(str, choices))}{extra}, got {value!r}")
    return value
