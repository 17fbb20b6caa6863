r"""What the quantum layers of a model would take on a device: qubits, circuits, gates, depth, shots.

:func:`estimate_resources` gives one dict per quantum layer of a model (a
:class:`~qcreep.layers.FlippedQuanv3x3`, a :class:`~qcreep.layers.DataReUploadingLinear`, or a layer of
one of the newer families below, found by type among the model's modules), and
:func:`format_resources` a Markdown table of them. Any other quantum layer is a one-line error.

**Circuit executions per image.**

- Flipped quanvolution, the paper's protocol: one circuit per output position, per channel pair
  ``(o, c)`` and per measurement setting, i.e. ``C_out * C_in * H' * W' * settings``. The patch
  Hamiltonian is not diagonal. Its Pauli sum ``H = sum_k h_k P_k`` has, for a real symmetric 4x4
  matrix, only the 10 words with an even number of ``Y`` (``II`` needs no measurement); the other
  9 fall into **5 qubit-wise commuting settings** ``XX, XZ, YY, ZX, ZZ`` (single-qubit basis changes,
  then a computational-basis measurement; :func:`qcreep.hardware.export.qubitwise_settings`). Five
  is the fewest product-basis settings: ``XX, XZ, ZX, ZZ, YY`` pairwise do not commute qubit-wise.
  (General commuting groups need 3 settings, ``{XX, YY, ZZ}``, ``{IX, ZI, ZX}``, ``{IZ, XI, XZ}``,
  at the cost of an entangling basis change; not used here.)
- Flipped quanvolution, the cheaper alternative (``*_per_model`` fields): the states ``|psi_oc>``
  do not depend on the data, so the 9 Pauli expectations of each state can be estimated once,
  ``C_out * C_in * settings`` circuits **per model**, not per image; every patch's value is then
  ``sum_k h_k(patch) <P_k>`` computed classically (this is the layer's kernel
  ``Re(rho)[:3, :3] / C_in``). The estimation error is then the same for every image (a fixed
  error in the kernel, not fresh noise per image).
- Re-uploading head: one circuit per image; every output is a probability of the same
  measurement.

**Two-qubit gates and depth** come from transpiling one circuit of each layer to ``basis`` at
``optimization_level`` with a fixed ``seed_transpiler`` (no coupling map: all-to-all connectivity).
The head's circuit is built from the layer's own trained gates and a seeded random input; the
counts are those of **generic parameters** (any generic unitaries of the same size decompose to
the same counts), so they are cached per ``(layer kind, qubits, re-uploads, basis, level)``. For
the quanvolution the counts are the largest over the measurement circuits (state preparation,
basis change, measurement). Analytic references, labelled as such: the quantum Shannon
decomposition of a generic ``n``-qubit unitary uses ``(23/48) 4**n - (3/2) 2**n + 4/3`` CNOTs, and
no decomposition uses fewer than ``ceil((4**n - 3n - 1) / 4)`` (Shende, Markov and Bullock,
quant-ph/0308033 and quant-ph/0406176); a two-qubit state ``SU(4)|00>`` needs 1 CNOT.

**Shots** for a standard error ``<= precision`` of each output of the layer:

- Head: ``y_j = scale * p_j + bias_j`` with ``p_j`` estimated from ``S`` shots has standard error
  ``scale * sqrt(p_j (1 - p_j) / S) <= scale / (2 sqrt(S))``, so ``S = ceil(scale**2 / (4 eps**2))``
  (``scale`` is 1 for the published readout and ``exp(a)`` for ``output_scale="learned"``).
- Quanvolution: with ``S`` shots in each setting ``s``, the single-shot value of the words ``k``
  assigned to ``s`` is ``sum_k h_k b_k`` with ``b_k = +-1``, which is bounded by
  ``L_s = sum_k |h_k|``; so ``Var(<H>) <= sum_s L_s**2 / S``. Pixel values lie in ``[-1, 1]`` after
  normalisation, and ``sum_s L_s**2`` is convex in the patch, so its maximum ``B`` over patches is
  reached at a patch of +-1 entries: ``B = 75/16 = 4.6875`` (:func:`patch_variance_bound`, by
  enumeration of the 512 sign patterns). The output averages ``C_in`` independent channel terms,
  ``y_o = (1/C_in) sum_c <H_c> + bias_o``, so its variance is at most ``B / (C_in S)`` and
  ``S = ceil(B / (C_in eps**2))`` shots per circuit.

Total shots per image = circuit executions per image x shots per execution.

**The newer families** (:class:`~qcreep.layers.DressedCircuit`, :class:`~qcreep.layers.AngleReuploading`,
:class:`~qcreep.layers.AmplitudeCircuit`, :class:`~qcreep.layers.Quanvolution`,
:class:`~qcreep.layers.TrainableQuanvolution`; rows by :func:`family_row`). Their circuits are those of
:meth:`~qcreep.layers.QuantumLayer.circuits`, measured as in :mod:`qcreep.hardware.families`. With
``n`` qubits, ``D`` / ``L`` layers, ``G = ceil(in / 3)`` upload groups, ``C_in`` input channels and
``H' W'`` output positions, and the gates of one circuit as :func:`circuit_gates` counts them:

- ``dressed_circuit``: ``n`` circuits per input (circuit ``i`` measures ``Z_i``); per circuit
  ``2n + Dn`` one-qubit gates and ``D (n - 1)`` CNOTs; ``S = ceil(max_o sum_i W_oi^2 / eps^2)``.
- ``angle_reuploading``: 1 circuit; ``L (G + n)`` one-qubit gates and ``L |ring|`` CZs;
  ``S = ceil(s^2 / eps^2)``.
- ``amplitude_circuit``: 1 circuit; a state preparation of ``2^n`` amplitudes, ``L n`` one-qubit
  gates and ``L |ring|`` CNOTs; ``S = ceil(s^2 / (4 eps^2))``.
- ``quanvolution``, ``trainable_quanvolution``: ``H' W' C_in`` circuits per input (one per
  position and channel); ``n + L n`` one-qubit gates and the CNOTs of the ``L`` layers;
  ``S = ceil(max_o sum_c (sum_i |W_o,ci|)^2 / eps^2)``.

(``|ring|`` is ``n`` for ``n >= 3``, 1 for the CZ ring and 2 for the CNOT ring on 2 qubits, 0 on one;
the fixed quanvolution's ladders have ``n - 1`` CNOTs per layer, the trainable one's rings ``|ring|``.)
The shot formulas bound the variance of each output. Dressed: ``y_o = sum_i W_oi z_i + b_o`` with
each ``z_i`` from its own circuit, ``Var(z_i) = (1 - <Z_i>^2) / S <= 1 / S``. Angle: ``y_j = s z_j + c_j``,
``Var <= s^2 / S`` (``s = exp(a)``, the learned scale). Amplitude: ``y_j = s p_j + b_j``,
``Var = s^2 p_j (1 - p_j) / S <= s^2 / (4 S)``. Quanvolution: the channels' circuits are independent,
and within one circuit the single-shot value of ``sum_i W_o,ci (+-1)_i`` lies in
``[-sum_i |W_o,ci|, sum_i |W_o,ci|]``, so its variance is at most ``(sum_i |W_o,ci|)^2``. The
transpiled counts come from one circuit (the first of :meth:`circuits`, for a seeded random input),
translated by :func:`qcreep.hardware.export.program_to_qiskit` and transpiled as above, cached per
``(family, structure, basis, level, seed)``; the amplitude circuit's count includes Qiskit's
synthesis of the ``2^n``-amplitude state preparation.

Qiskit is optional: without it the analytic fields are filled and the transpiled ones are ``None``,
with a note to ``pip install "qcreep[hardware]"``.

Example:
    >>> import torch
    >>> from qcreep.models import build_model
    >>> model = build_model((1, 8, 8), level=2, num_classes=4, n_reps=2, dtype=torch.float64)
    >>> rows = estimate_resources(model, (1, 8, 8), transpile=False)
    >>> [(r["slot"], r["qubits"], r["executions_per_image"], r["shots_per_execution"]) for r in rows]
    [('conv1', 2, 5760, 46875), ('conv2', 2, 40960, 1465), ('head', 4, 1, 2500)]
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import time

import torch
from torch import nn

from qcreep.checks import check_int, check_number
from qcreep.errors import QcreepError
from qcreep.hardware import export
from qcreep.hardware.families import FAMILY_LAYERS
from qcreep.layers import (
    AmplitudeCircuit,
    AngleReuploading,
    DataReUploadingLinear,
    DressedCircuit,
    FlippedQuanv,
    FlippedQuanv3x3,
    QuantumLayer,
    Quanvolution,
    TrainableQuanvolution,
)
from qcreep.layers.amplitude import cnot_ring
from qcreep.layers.angle import cz_pairs
from qcreep.layers.dressed import cnot_pairs

INSTALL_NOTE = 'transpiled counts need Qiskit: pip install "qcreep[hardware]"'
_TRANSPILED: dict[tuple, dict] = {}


def qsd_cx_count(n_qubits: int) -> int:
    """CNOTs of the quantum Shannon decomposition of a generic ``n``-qubit unitary (an analytic reference).

    ``(23/48) 4**n - (3/2) 2**n + 4/3`` for ``n >= 2`` (Shende, Bullock and Markov), 0 for one qubit.

    Example:
        >>> [qsd_cx_count(n) for n in (1, 2, 3, 7)]
        [0, 3, 20, 7660]
    """
    n = check_int(n_qubits, "n_qubits", 1)
    if n == 1:
        return 0
    return round(23 * 4**n / 48 - 3 * 2**n / 2 + 4 / 3)


def cx_lower_bound(n_qubits: int) -> int:
    """Fewest CNOTs that can implement a generic ``n``-qubit unitary: ``ceil((4**n - 3n - 1) / 4)``.

    Example:
        >>> [cx_lower_bound(n) for n in (2, 3, 7)]
        [3, 14, 4091]
    """
    n = check_int(n_qubits, "n_qubits", 1)
    return -(-(4**n - 3 * n - 1) // 4)


def _ceil(value: float) -> int:
    return math.ceil(value - 1e-9)


def probability_shots(precision: float, scale: float = 1.0) -> int:
    """Shots for standard error ``<= precision`` of ``scale * p``, whatever ``p``: ``ceil(scale**2 / (4 eps**2))``.

    Example:
        >>> probability_shots(0.01)
        2500
    """
    eps = check_number(precision, "precision")
    return _ceil(scale**2 / (4 * eps**2))


@functools.cache
def patch_settings() -> tuple[str, ...]:
    """The qubit-wise commuting settings of a generic patch Hamiltonian: ``XX, XZ, YY, ZX, ZZ``."""
    words = [label for label, _ in export.pauli_decomposition(_sign_patches()[-1])]
    return tuple(export.qubitwise_settings(words))


@functools.cache
def _sign_patches() -> torch.Tensor:
    """The 512 patch Hamiltonians ``(A + A^T) / 2`` of 3x3 patches with entries +-1, zero-padded to 4x4."""
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=9)), dtype=torch.float64).reshape(-1, 3, 3)
    padded = torch.nn.functional.pad(signs, (0, 1, 0, 1))
    return 0.5 * (padded + padded.mT)


@functools.cache
def patch_variance_bound() -> float:
    """``B = max over patches of sum_s L_s**2``: ``Var(<H>) <= B / S`` with ``S`` shots per setting.

    ``L_s`` is the sum of ``|h_k|`` over the Pauli words assigned to setting ``s`` (the first
    setting of :func:`patch_settings` that measures the word). Pixels in ``[-1, 1]``; the bound is
    convex in the patch, so the maximum is over the 512 patches of +-1 entries.

    Example:
        >>> patch_variance_bound()
        4.6875
    """
    settings = patch_settings()
    best = 0.0
    for h in _sign_patches():
        groups = export.assign_terms(export.pauli_decomposition(h), settings)
        best = max(best, sum(sum(abs(c) for _, c in terms) ** 2 for terms in groups.values()))
    return round(best, 12)


def patch_shots(precision: float, in_channels: int = 1) -> int:
    """Shots per setting for standard error ``<= precision`` of a quanvolution output: ``ceil(B / (C_in eps**2))``.

    Example:
        >>> patch_shots(0.01), patch_shots(0.01, in_channels=32)
        (46875, 1465)
    """
    eps = check_number(precision, "precision")
    check_int(in_channels, "in_channels", 1)
    return _ceil(patch_variance_bound() / (in_channels * eps**2))


def _find_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = []
    for name, module in model.named_modules():
        if isinstance(module, (DataReUploadingLinear, FlippedQuanv3x3, *FAMILY_LAYERS)):
            name = name or type(module).__name__
            found.append((name, module))
    return found


def _input_shapes(model: nn.Module, layers, input_shape) -> dict[str, tuple]:
    """Each quantum layer's input shape (without batch), from one zero input through the model."""
    shapes: dict[str, tuple] = {}
    def recorder(name):
        def hook(module, args, out):
            shapes.setdefault(name, (tuple(args[0].shape[1:]), tuple(out.shape[1:])))
        return hook

    hooks = [module.register_forward_hook(recorder(name)) for name, module in layers]
    param = next(model.parameters(), None)
    dtype = torch.get_default_dtype() if param is None else (param.real.dtype if param.is_complex() else param.dtype)
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=dtype, device=None if param is None else param.device))
    except QcreepError as err:
        raise QcreepError(f"the model does not take inputs of shape {tuple(input_shape)}: {err}") from None
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _transpile_counts(key: tuple, build) -> dict:
    """Transpile the circuits ``build()`` returns (once per ``key``); the largest counts over them."""
    if key in _TRANSPILED:
        return dict(_TRANSPILED[key], cached=True)
    *_, basis, level, seed = key
    circuits = build()
    start = time.perf_counter()
    compiled = [export.transpile_circuit(c, basis=basis, optimization_level=level, seed_transpiler=seed)
                for c in circuits]
    seconds = time.perf_counter() - start
    skip = ("barrier", "measure")
    two_qubit = [sum(1 for inst in c.data if inst.operation.num_qubits == 2 and inst.operation.name not in skip)
                 for c in compiled]
    counts = {"two_qubit_gates": max(two_qubit),
              "depth": max(c.depth(lambda inst: inst.operation.name not in skip) for c in compiled),
              "gates": max(sum(v for k, v in c.count_ops().items() if k not in skip) for c in compiled),
              "transpile_seconds": round(seconds, 3)}
    _TRANSPILED[key] = counts
    return dict(counts, cached=False)


def _head_circuits(layer: DataReUploadingLinear, seed: int):
    def build():
        gen = torch.Generator().manual_seed(seed)
        x = 2 * torch.rand(layer.in_features, generator=gen, dtype=torch.float64) - 1
        return [export.to_qiskit(layer, x)]
    return build


def _quanv_circuits(conv: FlippedQuanv3x3, seed: int):
    def build():
        gen = torch.Generator().manual_seed(seed)
        image = 2 * torch.rand(conv.in_channels, 3, 3, generator=gen, dtype=torch.float64) - 1
        # a generic interior patch (every Pauli word present): the layer's gates without its padding
        inner = copy.deepcopy(conv)
        inner._padding, inner._stride = (0, 0), (1, 1)
        return [c for _, c in export.measurement_circuits(inner, image)]
    return build


def _transpiled_fields(layer, kind: str, n_qubits: int, n_reps: int, transpile: bool, basis, level: int,
                       seed: int) -> tuple[dict, list[str]]:
    empty = {"two_qubit_gates": None, "depth": None, "gates": None, "transpile_seconds": None, "cached": None}
    if not transpile:
        return empty, ["transpiled counts not computed (transpile=False)"]
    if layer.angles == "complex":
        return empty, ["complex angles (the published non-unitary mode): the gates are not unitary, "
                       "so there is no circuit to transpile"]
    try:
        export.require("qiskit", "transpiling")
    except QcreepError:
        return empty, [INSTALL_NOTE]
    key = (kind, n_qubits, n_reps, tuple(basis), level, seed)
    build = _head_circuits(layer, seed) if kind == "data_reuploading" else _quanv_circuits(layer, seed)
    return _transpile_counts(key, build), []


FAMILY_NAMES = {DressedCircuit: "dressed_circuit", AngleReuploading: "angle_reuploading",
                AmplitudeCircuit: "amplitude_circuit", Quanvolution: "quanvolution",
                TrainableQuanvolution: "trainable_quanvolution"}


def _family_name(layer) -> str:
    for cls, name in FAMILY_NAMES.items():
        if type(layer) is cls:
            return name
    for cls, name in FAMILY_NAMES.items():
        if isinstance(layer, cls):
            return name
    raise QcreepError(f"no resource model for layer {type(layer).__name__}")


def circuit_gates(layer) -> dict:
    """Gates of one circuit of a family layer, from its structure: ``{"one_qubit", "two_qubit", "state_preparation"}``.

    See the module docstring's table; ``state_preparation`` is the number of amplitudes of the initial
    state (the amplitude circuit's ``2^n``), 0 for circuits that start in ``|0...0>``.

    Example:
        >>> from qcreep.layers import DressedCircuit
        >>> circuit_gates(DressedCircuit(8, 2))     # n = 4, D = 6
        {'one_qubit': 32, 'two_qubit': 18, 'state_preparation': 0}
    """
    n = layer.n_qubits
    prep = 0
    if isinstance(layer, DressedCircuit):
        one, two = 2 * n + layer.depth * n, layer.depth * len(cnot_pairs(n))
    elif isinstance(layer, AngleReuploading):
        one, two = layer.layers * (layer.groups + n), layer.layers * len(cz_pairs(n))
    elif isinstance(layer, AmplitudeCircuit):
        one = layer.layers * n
        two = sum(len(cnot_ring(n, index)) for index in range(layer.layers))
        prep = 2**n
    elif isinstance(layer, Quanvolution | TrainableQuanvolution):
        pairs = layer.layer_pairs()
        one, two = n + len(pairs) * n, sum(len(p) for p in pairs)
    else:
        raise QcreepError(f"no gate count for layer {type(layer).__name__}")
    return {"one_qubit": one, "two_qubit": two, "state_preparation": prep}


def family_shots(layer, precision: float) -> int:
    """Shots per circuit for standard error ``<= precision`` of every output of a family layer (module docstring)."""
    eps = check_number(precision, "precision")
    with torch.no_grad():
        if isinstance(layer, DressedCircuit):
            bound = float(layer.post.weight.detach().double().square().sum(1).max())
        elif isinstance(layer, AngleReuploading):
            bound = float(layer.log_scale.detach().double().exp()) ** 2
        elif isinstance(layer, AmplitudeCircuit):
            bound = float(layer.log_scale.detach().double().exp()) ** 2 / 4
        elif isinstance(layer, Quanvolution | TrainableQuanvolution):
            w = layer.mix_weight.detach().double().reshape(layer.out_channels, layer.in_channels, layer.n_qubits)
            bound = float(w.abs().sum(-1).square().sum(-1).max())
        else:
            raise QcreepError(f"no shot model for layer {type(layer).__name__}")
    return max(1, _ceil(bound / eps**2))


def _family_input(layer, seed: int) -> torch.Tensor:
    """A seeded random input of the layer: features in ``[-1, 1]``, or an image of one kernel-sized patch."""
    gen = torch.Generator().manual_seed(seed)
    if isinstance(layer, Quanvolution | TrainableQuanvolution):
        size = [d * (k - 1) + 1 for k, d in zip(layer.kernel_hw, layer._dilation)]
        return torch.rand(layer.in_channels, *size, generator=gen, dtype=torch.float64)
    return 2 * torch.rand(layer.in_features, generator=gen, dtype=torch.float64) - 1


def _family_structure(layer) -> tuple:
    if isinstance(layer, DressedCircuit):
        return (layer.depth,)
    if isinstance(layer, AngleReuploading):
        return (layer.layers, layer.groups)
    if isinstance(layer, AmplitudeCircuit):
        return (layer.layers,)
    return tuple(tuple(p) for p in layer.layer_pairs())


def family_row(layer, common: dict, out_shape, precision: float, transpile: bool, basis, level: int,
               seed: int) -> dict:
    """The resource row of a family layer (see the module docstring); ``common`` holds the shared fields."""
    name = _family_name(layer)
    n = layer.n_qubits
    gates = circuit_gates(layer)
    shots = family_shots(layer, precision)
    notes = []
    if isinstance(layer, DressedCircuit):
        executions = n
        notes.append(f"{n} circuits per input, circuit i measuring Z_i; all n <Z_i> could also be read from one "
                     "circuit's computational-basis shots (1 circuit instead of n)")
    elif isinstance(layer, Quanvolution | TrainableQuanvolution):
        positions = int(out_shape[-1]) * int(out_shape[-2])
        executions = positions * layer.in_channels
        notes.append("one circuit per output position and input channel (each patch its own circuit), measured in "
                     "the computational basis: all n <Z_i> of a patch from the same shots")
    else:
        executions = 1
        notes.append("one circuit per input, measured in the computational basis")
    counts = {"two_qubit_gates": None, "depth": None, "gates": None, "transpile_seconds": None, "cached": None}
    if not transpile:
        notes.append("transpiled counts not computed (transpile=False)")
    else:
        try:
            export.require("qiskit", "transpiling")
        except QcreepError:
            notes.append(INSTALL_NOTE)
        else:
            key = (name, n, _family_structure(layer), tuple(basis), level, seed)
            work = copy.deepcopy(layer).to(torch.float64)

            def build():
                return [export.program_to_qiskit(work.circuits(_family_input(work, seed))[0])]

            counts = _transpile_counts(key, build)
    row = dict(common, layer=name, qubits=n, executions_per_image=executions, shots_per_execution=shots,
               shots_per_image=executions * shots, circuit_gates=gates,
               reference={"one_qubit_gates": gates["one_qubit"], "two_qubit_gates": gates["two_qubit"],
                          "state_preparation_amplitudes": gates["state_preparation"]})
    row.update(counts)
    row["notes"] = notes
    return row


def estimate_resources(model: nn.Module, input_shape, *, precision: float = 0.01, transpile: bool = True,
                       optimization_level: int = 1, basis=export.DEFAULT_BASIS, seed_transpiler: int = 0) -> list[dict]:
    """One dict per quantum layer of ``model`` (in module order) for inputs of ``input_shape``.

    Args:
        model: a network (e.g. :func:`qcreep.models.build_model`) or a single quantum layer.
        input_shape: one input without the batch dimension, e.g. ``(1, 32, 32)``.
        precision: the standard error ``eps`` wanted for each output of each layer.
        transpile: transpile one circuit per layer kind and size (needs Qiskit; cached).
        optimization_level, basis, seed_transpiler: passed to ``qiskit.transpile``.

    Returns:
        A list of dicts with the keys ``slot``, ``layer``, ``qubits``, ``input_shape``,
        ``output_shape``, ``executions_per_image``, ``shots_per_execution``, ``shots_per_image``,
        ``two_qubit_gates`` and ``depth`` (per circuit, transpiled; ``None`` without Qiskit),
        ``gates``, ``transpile_seconds``, ``cached``, ``basis``, ``optimization_level``,
        ``precision``, ``reference`` (analytic CNOT counts) and ``notes``; for the quanvolution also
        ``channel_pairs``, ``positions``, ``settings``, ``executions_per_model`` and
        ``shots_per_model`` (the data-independent alternative); for the head ``n_reps`` and
        ``readout_scale``. See the module docstring for the formulas.
    """
    eps = check_number(precision, "precision")
    check_int(optimization_level, "optimization_level", 0, 3)
    basis = tuple(str(b) for b in basis)
    input_shape = tuple(check_int(d, "input_shape entries", 1) for d in input_shape)
    unsupported = [(name or type(m).__name__, m) for name, m in model.named_modules()
                   if isinstance(m, FlippedQuanv) and not isinstance(m, FlippedQuanv3x3)]
    if unsupported:
        name, layer = unsupported[0]
        kh, kw = layer.kernel_hw
        raise QcreepError(f"resources are estimated for the 3x3 flipped quanvolution and the re-uploading head; slot "
                          f"'{name}' holds a {kh}x{kw} flipped quanvolution ({layer.n_qubits} qubits), whose "
                          "measurement settings are not counted yet")
    known = (DataReUploadingLinear, FlippedQuanv, *FAMILY_LAYERS)
    other = [(name or type(m).__name__, m) for name, m in model.named_modules()
             if isinstance(m, QuantumLayer) and not isinstance(m, known)]
    if other:
        name, layer = other[0]
        raise QcreepError(f"slot '{name}' holds {type(layer).__name__}, which has no resource model; supported: "
                          "FlippedQuanv3x3, DataReUploadingLinear, " + ", ".join(c.__name__ for c in FAMILY_LAYERS))
    layers = _find_layers(model)
    if not layers:
        return []
    shapes = _input_shapes(model, layers, input_shape)
    rows = []
    for name, layer in layers:
        in_shape, out_shape = shapes[name]
        common = {"slot": name, "input_shape": list(in_shape), "output_shape": list(out_shape), "precision": eps,
                  "basis": list(basis), "optimization_level": optimization_level}
        if isinstance(layer, FAMILY_LAYERS):
            rows.append(family_row(layer, common, out_shape, eps, transpile, basis, optimization_level,
                                   seed_transpiler))
            continue
        if isinstance(layer, FlippedQuanv3x3):
            settings = patch_settings()
            pairs = layer.out_channels * layer.in_channels
            positions = out_shape[-1] * out_shape[-2]
            shots = patch_shots(eps, layer.in_channels)
            counts, notes = _transpiled_fields(layer, "flipped_quanv3x3", 2, 0, transpile, basis,
                                               optimization_level, seed_transpiler)
            row = dict(common, layer="flipped_quanv3x3", qubits=2, channel_pairs=pairs, positions=positions,
                       settings=list(settings),
                       executions_per_image=pairs * positions * len(settings),
                       shots_per_execution=shots,
                       executions_per_model=pairs * len(settings),
                       reference={"two_qubit_state_preparation": 1, "two_qubit_generic_su4": qsd_cx_count(2)})
            row["shots_per_image"] = row["executions_per_image"] * shots
            row["shots_per_model"] = row["executions_per_model"] * shots
            notes = [f"{len(settings)} qubit-wise commuting settings ({', '.join(settings)}) per patch observable",
                     "per model: the states do not depend on the data, so C_out*C_in*settings circuits estimate "
                     "every kernel once (a fixed estimation error shared by all images)", *notes]
        else:
            n, reps = layer.n_qubits, layer.n_reps
            scale = export.readout_parameters(layer)["scale"] if layer.angles == "real" else 1.0
            shots = probability_shots(eps, scale)
            counts, notes = _transpiled_fields(layer, "data_reuploading", n, reps, transpile, basis,
                                               optimization_level, seed_transpiler)
            row = dict(common, layer="data_reuploading", qubits=n, n_reps=reps, readout_scale=scale,
                       executions_per_image=1, shots_per_execution=shots, shots_per_image=shots,
                       reference={"unitaries": 2 * reps,
                                  "two_qubit_qsd": 2 * reps * qsd_cx_count(n),
                                  "two_qubit_lower_bound": 2 * reps * cx_lower_bound(n)})
            notes = [f"{2 * reps} generic {2**n}x{2**n} unitaries (R data unitaries and R SU gates); "
                     "counts for generic parameters", *notes]
        row.update(counts)
        row["notes"] = notes
        rows.append(row)
    return rows


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    return f"{value:,}"


def format_resources(rows: list[dict], *, title: str | None = None) -> str:
    """A Markdown table of :func:`estimate_resources` rows, with the per-model alternative and notes.

    Example:
        >>> print(format_resources([]))
        no quantum layers
    """
    if not rows:
        return "no quantum layers"
    header = ("slot", "layer", "qubits", "circuits / image", "shots / circuit", "shots / image",
              "2q gates / circuit", "depth", "transpile s")
    lines = [] if title is None else [f"### {title}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = (r["slot"], r["layer"], r["qubits"], r["executions_per_image"], r["shots_per_execution"],
                 r["shots_per_image"], r["two_qubit_gates"], r["depth"],
                 None if r["transpile_seconds"] is None else r["transpile_seconds"])
        lines.append("| " + " | ".join(c if isinstance(c, str) else _fmt(c) for c in cells) + " |")
    lines.append("")
    lines.append(f"Total per image: {_fmt(sum(r['executions_per_image'] for r in rows))} circuits, "
                 f"{_fmt(sum(r['shots_per_image'] for r in rows))} shots.")
    per_model = [r for r in rows if "executions_per_model" in r]
    if per_model:
        lines.append("Quanvolution, data-independent alternative (each state's Pauli expectations once per model): "
                     + "; ".join(f"{r['slot']}: {_fmt(r['executions_per_model'])} circuits, "
                                 f"{_fmt(r['shots_per_model'])} shots per model" for r in per_model))
    first = rows[0]
    lines.append("")
    lines.append(f"Precision {first['precision']:g} (standard error of each output); basis "
                 f"{', '.join(first['basis'])}, optimisation level {first['optimization_level']}, "
                 "all-to-all connectivity.")
    notes: dict[str, list[str]] = {}  # note -> the slots it applies to, in order
    for r in rows:
        ref = r["reference"]
        own = list(r["notes"])
        if "circuit_gates" in r:
            g = r["circuit_gates"]
            prep = (f" and a {_fmt(g['state_preparation'])}-amplitude state preparation"
                    if g["state_preparation"] else "")
            own.append(f"per circuit {_fmt(g['one_qubit'])} one-qubit and {_fmt(g['two_qubit'])} two-qubit gates as "
                       f"listed{prep}")
        if r["layer"] == "data_reuploading":
            own.append(f"analytic reference for {ref['unitaries']} generic unitaries: quantum Shannon decomposition "
                       f"{_fmt(ref['two_qubit_qsd'])} CNOTs, lower bound {_fmt(ref['two_qubit_lower_bound'])}; "
                       f"readout scale {r['readout_scale']:.3g}")
        for note in own:
            notes.setdefault(note, []).append(r["slot"])
    lines += [f"- {', '.join(slots)}: {note}" for note, slots in notes.items()]
    return "\n".join(lines)
