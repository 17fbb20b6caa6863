"""The published results of "Let the Quantum Creep In" (Wang et al., arXiv:2409.17583) as data.

All accuracies are test accuracies in PERCENT. Dataset keys use the names of the qcreep command line:
``"mnist"``, ``"fashion-mnist"`` and ``"cifar10"`` (the paper has no numbers for ``"digits"``).
Levels are the replacement levels 0 (classical), 1 (both convolutions quantum) and 2 (convolutions
and head quantum).

Two implementations were published, with different protocols, and they disagree:

* :data:`PUBLISHED_TORCH` - the PyTorch implementation, whose trainable angles are **complex**, so
  its "unitaries" are in general not unitary after training (see docs/paper.md, "Known hazards").
* :data:`PUBLISHED_JAX` - the JAX implementation with real (physical) angles.

This module is pure data plus look-up helpers; it imports nothing from the training code.
"""

from __future__ import annotations

import operator

from qcreep.errors import QcreepError

#: Epochs at which the PyTorch results are published.
PUBLISHED_EPOCHS: tuple[int, ...] = (1, 5, 10, 20, 50)

#: Protocol of the PyTorch runs behind :data:`PUBLISHED_TORCH`.
PUBLISHED_TORCH_PROTOCOL: dict = {
    "implementation": "PyTorch",
    "angles": "complex",
    "optimizer": "Adam",
    "batch_size": 200,
    "lr": 5e-4,
    "epochs": 50,
    "n_reps": 10,
    "n_runs": 5,
    "max_train": None,  # full training set
    "max_test": None,  # full test set
}

#: Protocol of the JAX runs behind :data:`PUBLISHED_JAX`.
PUBLISHED_JAX_PROTOCOL: dict = {
    "implementation": "JAX",
    "angles": "real",
    "batch_size": 1000,
    "lr": 5e-3,
    "epochs": 100,
    "n_reps": 1,
    "max_train": None,
    "max_test": None,
}

PUBLISHED_TORCH: dict[tuple[str, int], dict[int, tuple[float, float]]] = {
    ("mnist", 0): {1: (91.55, 0.21), 5: (92.19, 0.27), 10: (92.36, 0.17), 20: (92.25, 0.09), 50: (92.30, 0.13)},
    ("mnist", 1): {1: (90.05, 0.47), 5: (92.01, 0.23), 10: (92.32, 0.14), 20: (92.28, 0.23), 50: (92.34, 0.13)},
    ("mnist", 2): {1: (93.76, 1.18), 5: (96.07, 0.39), 10: (95.89, 0.39), 20: (96.73, 0.14), 50: (96.92, 0.32)},
    ("fashion-mnist", 0): {1: (83.50, 0.14), 5: (83.83, 0.27), 10: (83.96, 0.27), 20: (83.87, 0.13), 50: (83.62, 0.14)},
    ("fashion-mnist", 1): {1: (80.48, 0.47), 5: (83.90, 0.16), 10: (83.89, 0.22), 20: (83.97, 0.26), 50: (83.41, 0.37)},
    ("fashion-mnist", 2): {1: (80.47, 1.44), 5: (84.67, 0.70), 10: (85.20, 0.54), 20: (86.12, 0.33), 50: (86.57, 0.62)},
    ("cifar10", 0): {1: (40.18, 0.38), 5: (40.07, 0.36), 10: (39.68, 0.14), 20: (38.73, 0.16), 50: (36.98, 0.31)},
    ("cifar10", 1): {1: (28.98, 1.95), 5: (38.85, 0.68), 10: (39.38, 0.58), 20: (39.39, 0.46), 50: (38.85, 0.26)},
    ("cifar10", 2): {1: (33.86, 1.36), 5: (42.53, 0.35), 10: (44.87, 0.49), 20: (47.47, 0.53), 50: (48.94, 0.09)},
}
"""PyTorch implementation: ``{(dataset, level): {epoch: (mean, sd)}}``, test accuracy in percent.

Protocol (:data:`PUBLISHED_TORCH_PROTOCOL`): Adam, batch 200, learning rate 5e-4, 50 epochs,
10 data re-uploads in the level-2 head, **complex** trainable angles (non-unitary after training),
full training and test sets; mean and *population* standard deviation (ddof=0) over 5 runs,
taken from the authors' per-epoch result files at epochs 1, 5, 10, 20 and 50.
"""

PUBLISHED_JAX: dict[tuple[str, int], float] = {
    ("mnist", 0): 92.07,
    ("mnist", 1): 92.25,
    ("mnist", 2): 94.54,
    ("fashion-mnist", 0): 83.72,
    ("fashion-mnist", 1): 83.70,
    ("fashion-mnist", 2): 80.54,
    ("cifar10", 0): 33.66,
    ("cifar10", 1): 38.67,
    ("cifar10", 2): 38.07,
}
"""JAX implementation: ``{(dataset, level): final test accuracy in percent}`` after 100 epochs.

Protocol (:data:`PUBLISHED_JAX_PROTOCOL`): batch 1000, learning rate 5e-3, 100 epochs, 1 data
re-upload in the level-2 head, **real** (physical, unitary) angles. Only the final value is published
(no standard deviation).
"""

END_TO_END_QUANTUM: dict[str, float] = {
    "mnist": 89.7,
    "fashion-mnist": 79.6,
}
"""Published test accuracy (percent) of the end-to-end quantum network the paper compares against.

The headline claim is that level 2 (PyTorch, complex angles) beats it: 96.9 vs 89.7 on MNIST and
86.6 vs 79.6 on FashionMNIST.
"""

_ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "digits": "digits",
}


def canonical_dataset(name: str) -> str:
    """Map a dataset name (``"FashionMNIST"``, ``"CIFAR-10"`` ...) to the qcreep CLI name.

    Names that are not known are returned lower-cased and stripped, unchanged otherwise.
    """
    if not isinstance(name, str):
        raise QcreepError(f"dataset name must be a string, got {type(name).__name__}; "
                          "valid names: digits, mnist, fashion-mnist, cifar10")
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def _as_level(level) -> int | None:
    if level is None or isinstance(level, bool):
        return None
    try:
        return operator.index(level)
    except TypeError:
        return None


def _as_epoch(epoch) -> int:
    if isinstance(epoch, bool):
        raise QcreepError(f"epoch must be a positive integer, got {epoch!r}")
    try:
        value = operator.index(epoch)
    except TypeError:
        if isinstance(epoch, float) and epoch.is_integer():
            value = int(epoch)
        else:
            raise QcreepError(f"epoch must be a positive integer, got {epoch!r}") from None
    if value < 1:
        raise QcreepError(f"epoch must be a positive integer (1 or more), got {value}")
    return value


def published_at(dataset: str, level, epoch) -> tuple[float, float] | None:
    """Published PyTorch ``(mean, sd)`` in percent at exactly this epoch, or None.

    None when the paper has no number for this dataset, level or epoch (published epochs are
    1, 5, 10, 20 and 50).
    """
    ep = _as_epoch(epoch)
    table = _torch_table(dataset, level)
    return None if table is None else table.get(ep)


def _torch_table(dataset: str, level) -> dict | None:
    lvl = _as_level(level)
    if lvl is None:
        return None
    return PUBLISHED_TORCH.get((canonical_dataset(dataset), lvl))


def published_at_or_before(dataset: str, level, epoch) -> tuple[int, float, float] | None:
    """``(published_epoch, mean, sd)`` at the largest published epoch <= ``epoch``, or None.

    For epoch 7 this is the epoch-5 number; for 100 epochs it is the epoch-50 (final) number.
    """
    ep = _as_epoch(epoch)
    table = _torch_table(dataset, level)
    if table is None:
        return None
    candidates = [e for e in table if e <= ep]
    if not candidates:
        return None
    best = max(candidates)
    mean, sd = table[best]
    return best, mean, sd


def published_jax(dataset: str, level) -> float | None:
    """Published JAX (real angles, 100 epochs) final accuracy in percent, or None."""
    lvl = _as_level(level)
    if lvl is None:
        return None
    return PUBLISHED_JAX.get((canonical_dataset(dataset), lvl))


def end_to_end_quantum(dataset: str) -> float | None:
    """Published accuracy (percent) of the end-to-end quantum baseline, or None."""
    return END_TO_END_QUANTUM.get(canonical_dataset(dataset))


#: Built-in end-to-end quantum models (``qcreep.endtoend``), nothing to swap in them: the paper's
#: baseline, with its authors' published final test accuracy (mean, sd in %) for labels 0-7 under their
#: protocol (batch 1000, 100 epochs, element-wise gradient clipping at 1, Adam 0.01 x 0.99**(step/100)).
END_TO_END_BASELINES = {
    "hamembedding": {"source": "Wang, Myers, Hollenberg, Parampalli, arXiv:2407.14055",
                     "classes": tuple(range(8)),
                     "layers": {"mnist": 10, "fashion-mnist": 20},
                     "accuracy": {"mnist": (89.72, 0.98), "fashion-mnist": (79.62, 0.18)}},
}
END_TO_END_MODELS = tuple(END_TO_END_BASELINES)
