"""Evaluate a trained model with finite shots and local depolarising noise (inference only).

qcreep's layers compute exact expectation values of noiseless circuits. An :class:`Execution`
says how the quantum layers should be evaluated instead:

* ``shots``: ``None`` for exact expectation values, or ``S`` measurements per circuit (the
  re-uploading head: ``S`` shots per image; the flipped quanvolution: ``S`` shots per measurement
  setting, 5 qubit-wise commuting settings per patch and channel pair). See
  :mod:`qcreep.hardware.shots` for the estimators and their variances.
* ``noise``: the probability ``p`` of a single-qubit depolarising channel on every qubit after
  every block, ``D_p(rho) = (1 - p) rho + (p / 3)(X rho X + Y rho Y + Z rho Z)`` (PennyLane's
  ``DepolarizingChannel(p)``; Qiskit Aer's ``depolarizing_error(4 p / 3, 1)``), ``p`` in
  ``[0, 3/4]``. Simulated exactly with density matrices; see :mod:`qcreep.hardware.noise` for
  where the channels sit and what they cost.
* ``seed``: the seed of the shot sampling. Each image of each quantum layer has its own random
  stream, seeded from ``(seed, layer index, image index)``, so the draws do not depend on the batch
  size (the results agree across batch sizes to rounding); they depend on the order of the images.
* ``shots_mode``: ``"auto"``, ``"exact"`` or ``"gaussian"``, how the flipped quanvolution's shot
  noise is drawn (:mod:`qcreep.hardware.shots`). The other layers are always sampled exactly.

:func:`executed` returns a module computing the model's function with every quantum layer
(``FlippedQuanv3x3``, ``DataReUploadingLinear``, and the newer families ``DressedCircuit``,
``AngleReuploading``, ``AmplitudeCircuit``, ``Quanvolution``, ``TrainableQuanvolution``, whose
blocks, exact noisy simulation, shot models and limits are in :mod:`qcreep.hardware.families`)
evaluated under the execution and every other layer unchanged. It shares the model's parameters.
:func:`evaluate_execution` measures loss and accuracy under one execution; :func:`evaluate_grid`
sweeps accuracy against shots and against the error rate.

Finite shots and noise are only defined for circuits of unitary gates: a layer with complex angles
(the published code's non-physical mode) is refused unless the execution is exact.

Example:
    >>> import torch
    >>> from qcreep.models import build_model
    >>> torch.manual_seed(0) and None
    >>> model = build_model((1, 12, 12), level=2, n_reps=2, dtype=torch.float64)
    >>> x = torch.randn(4, 1, 12, 12, dtype=torch.float64)
    >>> noisy = executed(model, Execution(shots=1000, noise=0.01, seed=3))
    >>> with torch.no_grad():
    ...     out = noisy(x)
    ...     again = executed(model, Execution(shots=1000, noise=0.01, seed=3))(x)
    >>> out.shape, bool(torch.equal(out, again))
    (torch.Size([4, 10]), True)
    >>> Execution(shots=1000, noise=0.01).label
    'shots=1000, noise=0.01'
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qcreep.checks import check_choice, check_int
from qcreep.creep import quantum_layers
from qcreep.errors import QcreepError
from qcreep.hardware.families import FAMILY_LAYERS, check_execution, family_forward
from qcreep.hardware.noise import (
    check_noise,
    diagonal_probabilities,
    quanv_density_matrices,
    quanv_kernel,
    reupload_density_matrices,
)
from qcreep.hardware.sampling import stream_keys
from qcreep.hardware.shots import (
    MAX_SHOTS,
    SHOTS_MODES,
    image_generators,
    pauli_expectations,
    quanv_shots_exact,
    quanv_shots_gaussian,
    resolve_shots_mode,
    sample_counts,
)
from qcreep.layers import DataReUploadingLinear, FlippedQuanv3x3
from qcreep.models import loss_and_accuracy
from qcreep.sim import probabilities

# the accuracy-against-shots and accuracy-against-error-rate sweeps of evaluate_grid
DEFAULT_SHOTS = (None, 100, 1000, 10_000, 100_000)
DEFAULT_NOISE = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
# images per batch of density matrices in the noisy re-uploading head (128 x 128 complex64 matrices
# at n = 7: 128 KiB each)
DENSITY_CHUNK = 64
QUANTUM_LAYERS = (FlippedQuanv3x3, DataReUploadingLinear, *FAMILY_LAYERS)


@dataclass(frozen=True)
class Execution:
    """How the quantum layers are evaluated: shots (``None``: exact), noise ``p``, seed, shots mode.

    ``noise`` is the single-qubit depolarising probability ``p`` in ``[0, 3/4]`` (PennyLane's
    ``DepolarizingChannel(p)``, Aer's ``depolarizing_error(4 p / 3, 1)``), applied to every qubit
    after every block of the circuit. ``shots`` is a positive integer (at most ``10**12``).

    Example:
        >>> Execution()
        Execution(shots=None, noise=0.0, seed=0, shots_mode='auto')
        >>> Execution().exact, Execution(noise=1e-3).label
        (True, 'noise=0.001')
        >>> Execution(shots=0)
        Traceback (most recent call last):
        ...
        qcreep.errors.QcreepError: shots must be an integer from 1 to 1000000000000, got 0
    """

    shots: int | None = None
    noise: float = 0.0
    seed: int = 0
    shots_mode: str = "auto"

    def __post_init__(self):
        if self.shots is not None:
            object.__setattr__(self, "shots", check_int(self.shots, "shots", 1, MAX_SHOTS))
        object.__setattr__(self, "noise", check_noise(self.noise))
        object.__setattr__(self, "seed", check_int(self.seed, "seed", 0))
        check_choice(self.shots_mode, "shots_mode", SHOTS_MODES,
                     note="how the quanvolution's shot noise is drawn")

    @property
    def exact(self) -> bool:
        """True for exact expectation values of noiseless circuits (the model itself)."""
        return self.shots is None and self.noise == 0.0

    @property
    def label(self) -> str:
        """``'exact'``, ``'shots=1000'``, ``'noise=0.001'`` or ``'shots=1000, noise=0.001'``."""
        parts = ([f"shots={self.shots}"] if self.shots is not None else []) + (
            [f"noise={self.noise:g}"] if self.noise else [])
        return ", ".join(parts) or "exact"


def _angle_mode(layer) -> str:
    """``"real"`` or ``"complex"``: the paper's layers say so in ``angles``; the other layers are always real
    (``AngleReuploading.angles`` is a method, not a mode)."""
    mode = getattr(layer, "angles", "real")
    return mode if isinstance(mode, str) else "real"


def _real_dtype(param: torch.Tensor) -> torch.dtype:
    return param.real.dtype if param.is_complex() else param.dtype


def _real_bias(bias: torch.Tensor) -> torch.Tensor:
    return bias.real if bias.is_complex() else bias


def _require_no_grad(what: str) -> None:
    if torch.is_grad_enabled():
        raise QcreepError(f"{what} is for inference only (shots and noise have no gradient here): "
                          "call it under torch.no_grad()")


class ExecutedLayer(nn.Module):
    """One quantum layer evaluated under an :class:`Execution` (holds the layer, shares its parameters).

    ``images_seen`` counts the images given since construction or :meth:`reset`; image ``i`` of
    this layer draws its shots from the stream ``(seed, layer_index, i)``: a ``torch.Generator`` for
    the paper's two layers, the counter-based stream of :mod:`qcreep.hardware.sampling` for the
    newer families (all images of a batch at once).
    """

    def __init__(self, layer: nn.Module, execution: Execution, layer_index: int):
        super().__init__()
        if not isinstance(layer, QUANTUM_LAYERS):
            raise QcreepError(f"no shot or noise model for layer {type(layer).__name__}; supported: "
                              f"{', '.join(c.__name__ for c in QUANTUM_LAYERS)}")
        if isinstance(layer, FAMILY_LAYERS):
            check_execution(layer, execution)
        self.layer = layer
        self.execution = execution
        self.layer_index = layer_index
        self.images_seen = 0
        self._cache: dict = {}  # noisy observables of a family layer, until its parameters change

    def reset(self) -> None:
        """Start the shot streams again from image 0."""
        self.images_seen = 0

    def _generators(self, count: int) -> list[torch.Generator]:
        gens = image_generators(self.execution.seed, self.layer_index, self.images_seen, count)
        self.images_seen += count
        return gens

    def _stream_keys(self, count: int) -> torch.Tensor:
        """The stream keys (:func:`qcreep.hardware.sampling.stream_keys`) of the next ``count`` images."""
        keys = stream_keys(self.execution.seed, self.layer_index, self.images_seen, count)
        self.images_seen += count
        return keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _require_no_grad("an executed layer")
        if self.execution.exact:
            return self.layer(x)
        if isinstance(self.layer, FAMILY_LAYERS):
            return family_forward(self.layer, x, self.execution, self._stream_keys, self._cache)
        if isinstance(self.layer, DataReUploadingLinear):
            return self._reupload(x)
        return self._quanv(x)

    def _reupload(self, x: torch.Tensor) -> torch.Tensor:
        layer, ex = self.layer, self.execution
        if x.is_complex() or x.dim() < 1 or x.shape[-1] != layer.in_features:
            raise QcreepError(f"DataReUploadingLinear expects real input (*, {layer.in_features}), "
                              f"got {tuple(x.shape)} {x.dtype}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, layer.in_features).to(_real_dtype(layer.theta))
        if ex.noise == 0.0:
            probs = probabilities(layer.final_states(flat))
        else:
            probs = torch.cat([diagonal_probabilities(reupload_density_matrices(layer, flat[i:i + DENSITY_CHUNK],
                                                                                ex.noise))
                               for i in range(0, flat.shape[0], DENSITY_CHUNK)]) if flat.shape[0] else \
                flat.new_zeros(0, 2**layer.n_qubits)
        if ex.shots is not None:
            counts = sample_counts(probs, ex.shots, layer.out_features, self._generators(flat.shape[0]))
            probs = (counts / ex.shots).to(device=probs.device, dtype=probs.dtype)
        return layer.readout(probs).reshape(*lead, layer.out_features)

    def _quanv(self, x: torch.Tensor) -> torch.Tensor:
        layer, ex = self.layer, self.execution
        if x.is_complex() or x.dim() not in (3, 4) or x.shape[-3] != layer.in_channels:
            raise QcreepError(f"FlippedQuanv3x3 expects real input (B, {layer.in_channels}, H, W), "
                              f"got {tuple(x.shape)} {x.dtype}")
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        x = x.to(_real_dtype(layer.theta))
        rho = quanv_density_matrices(layer, ex.noise)
        mean = F.conv2d(x, quanv_kernel(rho, layer.in_channels), _real_bias(layer.bias),
                        stride=layer.stride, padding=layer.padding)
        if ex.shots is None:
            out = mean
        else:
            expectations = pauli_expectations(rho)
            gens = self._generators(x.shape[0])
            if resolve_shots_mode(ex.shots_mode, layer, x) == "exact":
                out = quanv_shots_exact(layer, x, expectations, ex.shots, gens)
            else:
                out = quanv_shots_gaussian(layer, x, mean, expectations, ex.shots, gens)
        return out[0] if unbatched else out

    def extra_repr(self) -> str:
        return f"{self.execution.label}, seed={self.execution.seed}, layer_index={self.layer_index}"


class ExecutedModel(nn.Module):
    """A model whose quantum layers run under an :class:`Execution` (see :func:`executed`)."""

    def __init__(self, network: nn.Module, execution: Execution, layers: dict[str, ExecutedLayer]):
        super().__init__()
        self.network = network
        self.execution = execution
        self._layers = layers  # plain dict: the wrappers are registered inside ``network``

    @property
    def executed_layers(self) -> dict[str, ExecutedLayer]:
        """``{module name in the model: wrapper}`` for every quantum layer, in stream order."""
        return dict(self._layers)

    def reset(self) -> None:
        """Start every shot stream again from image 0 (the next call repeats the same draws)."""
        for layer in self._layers.values():
            layer.reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _require_no_grad("an executed model")
        return self.network(x)


def _rebuild(module: nn.Module, wrappers: dict[int, nn.Module]) -> nn.Module:
    """``module`` with the layers in ``wrappers`` (by id) swapped for their wrappers.

    Modules without a quantum descendant are kept as they are (the same objects); those with one
    are shallow copies whose child dict is new, so the original model is left untouched.
    """
    if id(module) in wrappers:
        return wrappers[id(module)]
    if not any(id(m) in wrappers for m in module.modules()):
        return module
    new = copy.copy(module)
    new._modules = type(module._modules)()
    for name, child in module._modules.items():
        new._modules[name] = None if child is None else _rebuild(child, wrappers)
    return new


def executed(model: nn.Module, execution: Execution) -> ExecutedModel:
    """``model`` with every quantum layer evaluated under ``execution``; inference only.

    Every quantum layer with a shot and noise model (:data:`QUANTUM_LAYERS`) among
    ``model.named_modules()`` (``model`` itself included) is wrapped in an :class:`ExecutedLayer`,
    numbered in that order for the shot streams; the other modules are used as they are. Parameters
    are shared, not copied: later changes to the model's parameters show in the executed model. Call
    it under ``torch.no_grad()``. With ``Execution()`` it computes exactly what ``model`` computes.

    Raises :class:`QcreepError` for a layer with complex angles (unless the execution is exact), for
    a model built by qcreep holding a quantum layer with no shot or noise model, and for a layer
    whose noise cannot be simulated exactly (:func:`qcreep.hardware.families.check_execution`: more
    than 10 qubits, for example), before anything is computed.
    """
    if not isinstance(execution, Execution):
        raise QcreepError(f"executed takes an Execution, got {type(execution).__name__}")
    if not isinstance(model, nn.Module):
        raise QcreepError(f"executed takes a torch module, got {type(model).__name__}")
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, QUANTUM_LAYERS)]
    if not execution.exact:
        known = {id(m) for _, m in found}
        for name, layer in quantum_layers(model).items():
            if id(layer) not in known:
                raise QcreepError(f"slot '{name}' holds {type(layer).__name__}, which has no shot or noise "
                                  f"model; supported: {', '.join(c.__name__ for c in QUANTUM_LAYERS)}")
        for name, layer in found:
            if _angle_mode(layer) != "real":
                raise QcreepError(f"layer '{name or type(layer).__name__}' has complex angles (non-unitary "
                                  f"gates): shots and noise are only defined for angles='real'")
    wrappers = {id(m): ExecutedLayer(m, execution, index) for index, (_, m) in enumerate(found)}
    network = _rebuild(model, wrappers)
    return ExecutedModel(network, execution, {name: wrappers[id(m)] for name, m in found})


def _model_dtype_device(model: nn.Module):
    for param in model.parameters():
        return _real_dtype(param), param.device
    return torch.get_default_dtype(), torch.device("cpu")


def evaluate_execution(model: nn.Module, x: torch.Tensor, y: torch.Tensor, execution: Execution,
                       batch_size: int = 200) -> dict:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` with its quantum layers under ``execution``.

    The images are taken in order in batches of ``batch_size`` (results do not depend on it). The
    model's train/eval flags are restored afterwards.

    Returns ``{"shots", "noise", "seed", "shots_mode", "label", "n", "loss", "accuracy",
    "seconds"}`` (``accuracy`` a fraction, ``seconds`` the wall time of the evaluation).
    """
    check_int(batch_size, "batch_size", 1)
    if len(x) != len(y) or len(y) == 0:
        raise QcreepError(f"evaluate_execution needs as many labels as images (at least one), "
                          f"got {len(x)} images and {len(y)} labels")
    dtype, device = _model_dtype_device(model)
    modes = {m: m.training for m in model.modules()}
    start = time.perf_counter()
    net = executed(model, execution)
    net.eval()
    try:
        loss, accuracy = loss_and_accuracy(net, x, y, batch_size, device, dtype)
    finally:
        for module, mode in modes.items():
            module.training = mode
    return {"shots": execution.shots, "noise": execution.noise, "seed": execution.seed,
            "shots_mode": execution.shots_mode, "label": execution.label, "n": len(y),
            "loss": loss, "accuracy": accuracy, "seconds": time.perf_counter() - start}


def evaluate_grid(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  shots_list: Sequence[int | None] = DEFAULT_SHOTS, noise_list: Sequence[float] = DEFAULT_NOISE,
                  seed: int = 0, batch_size: int = 200, shots_mode: str = "auto",
                  log: Callable[[str], None] | None = None) -> list[dict]:
    """Accuracy against shots (noiseless) and against the error rate (exact expectation values).

    One row per distinct execution, in order: ``Execution(shots=s, seed=seed)`` for each ``s`` in
    ``shots_list`` (``None`` is exact), then ``Execution(noise=p, seed=seed)`` for each ``p`` in
    ``noise_list``; the exact execution (``shots=None, noise=0``) appears once. Each row is
    :func:`evaluate_execution`'s dict plus ``"sweep"``: ``"exact"``, ``"shots"`` or ``"noise"``.
    ``log``, if given, receives one line per row.
    """
    plan = [("shots", Execution(shots=s, seed=seed, shots_mode=shots_mode)) for s in shots_list]
    plan += [("noise", Execution(noise=p, seed=seed, shots_mode=shots_mode)) for p in noise_list]
    rows, seen = [], set()
    for sweep, execution in plan:
        if execution in seen:
            continue
        seen.add(execution)
        row = evaluate_execution(model, x, y, execution, batch_size)
        row["sweep"] = "exact" if execution.exact else sweep
        rows.append(row)
        if log is not None:
            log(f"{execution.label:>24}: accuracy {row['accuracy']:.4f}, loss {row['loss']:.4f}, "
                f"{row['seconds']:.2f} s")
    return rows
