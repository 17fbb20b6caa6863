r"""What the quantum layers of a model would take on a device: qubits, circuits, gates, depth, shots.

:func:`estimate_resources` gives one dict per quantum layer of a model (a
:class:`~qcreep.layers.FlippedQuanv3x3` or :class:`~qcreep.layers.DataReUploadingLinear`, found by
type among the model's modules), and :func:`format_resources` a Markdown table of them.

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
from qcreep.layers import DataReUploadingLinear, FlippedQuanv, FlippedQuanv3x3

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
        if isinstance(module, DataReUploadingLinear | FlippedQuanv3x3):
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
    layers = _find_layers(model)
    if not layers:
        return []
    shapes = _input_shapes(model, layers, input_shape)
    rows = []
    for name, layer in layers:
        in_shape, out_shape = shapes[name]
        common = {"slot": name, "input_shape": list(in_shape), "output_shape": list(out_shape), "precision": eps,
                  "basis": list(basis), "optimization_level": optimization_level}
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
        if r["layer"] == "data_reuploading":
            own.append(f"analytic reference for {ref['unitaries']} generic unitaries: quantum Shannon decomposition "
                       f"{_fmt(ref['two_qubit_qsd'])} CNOTs, lower bound {_fmt(ref['two_qubit_lower_bound'])}; "
                       f"readout scale {r['readout_scale']:.3g}")
        for note in own:
            notes.setdefault(note, []).append(r["slot"])
    lines += [f"- {', '.join(slots)}: {note}" for note, slots in notes.items()]
    return "\n".join(lines)
