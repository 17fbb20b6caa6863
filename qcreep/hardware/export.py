r"""Export a quantum layer's circuit for one input: Qiskit, PennyLane and OpenQASM 3.

qcreep simulates its layers exactly; this module writes the circuit that a device would run for
one input, so that another simulator or a device can reproduce the layer's output.

**The re-uploading head** (:class:`~qcreep.layers.DataReUploadingLinear`, ``n`` qubits, ``R``
re-uploads). The circuit is exactly the one the layer computes:

    |psi> = SU(theta_R) exp(iH/R) ... SU(theta_1) exp(iH/R) H^{(x)n} |0...0>,

Hadamards on every qubit (``|+>^n``), then ``R`` times the data unitary ``exp(i H / R)`` (``H`` the
symmetric embedding of ``x``, the same matrix at every re-upload) and the trainable
``SU(2**n)(theta_r) = exp(i sum_k theta_rk P_k)``. Both are full-register unitary gates, labelled
``exp(iH/R)`` and ``SU(2^n)[r]``. The measured basis-state probabilities ``p_j`` are turned into the
layer's output classically:

    y_j = scale * p_j + bias_j,   j < out_features,

with ``scale = exp(a)`` for ``output_scale="learned"`` and 1 otherwise. ``scale``, ``bias`` and
``out_features`` are in ``circuit.metadata["readout"]`` (see :func:`readout_parameters` and
:func:`apply_readout`).

**The flipped quanvolution** (:class:`~qcreep.layers.FlippedQuanv3x3`). The output at position
``(i, j)`` of output channel ``o`` is

    y_o(i, j) = (1 / C_in) sum_c <psi_oc| H_c(i, j) |psi_oc> + bias_o,

so one circuit belongs to one pair ``(o, c)``: the state preparation ``SU(4)(theta_oc)|00>`` (one
two-qubit unitary gate, labelled ``SU(4)[o,c]``), and the observable is the patch Hamiltonian
``H = (A + A^T) / 2`` of the 3x3 input patch ``A`` of channel ``c`` whose output is at ``(i, j)``,
zero-padded to 4x4 (an extra bottom row and right column), as a Pauli sum ``H = sum_k h_k P_k``
with ``h_k = Tr(P_k H) / 4`` (:func:`patch_observable`; a real symmetric ``H`` has only the 10 words
with an even number of ``Y``). ``circuit.metadata["readout"]`` holds the observable's terms, the
channel weight ``1 / C_in`` and ``bias_o``: the layer's output is
``bias_o + (1 / C_in) sum_c <H_c>`` over the ``C_in`` circuits ``in_channel = 0 .. C_in - 1``.

**Qubit order.** qcreep's qubit 0 is the most significant bit of a basis index (and the first letter
of a Pauli word acts on it); Qiskit's qubit 0 is the least significant bit. The export maps **qcreep
qubit k to Qiskit qubit n - 1 - k**. Then

- Qiskit's ``Statevector(circuit).probabilities()[j]`` is qcreep's probability of basis state ``j``,
- a counts key (a bit string, Qiskit qubit ``n - 1`` first) read as a binary number is qcreep's
  ``j``: the string lists qcreep's qubits 0, 1, ..., n - 1 from left to right,
- a Pauli label means the same matrix in both (Qiskit's leftmost letter acts on its qubit
  ``n - 1``, which is qcreep's qubit 0), so the observable's labels are written unchanged.

PennyLane's wire 0 is the most significant bit, as in qcreep: wire ``k`` is qcreep's qubit ``k``.

**OpenQASM 3** has no gate for an arbitrary matrix (nor for preparing an arbitrary state, as the
amplitude-embedded circuit starts with), so :func:`to_qasm3` transpiles the circuit to
a stated basis (default ``cx, rz, sx, x``, with a fixed ``seed_transpiler``) before writing it. The
transpiled circuit equals the exported one up to a global phase, which no probability or
expectation value sees.

Only physical layers can be exported: a layer with ``angles="complex"`` (the published code's
non-unitary mode) has gates that are not unitary, and no circuit implements them. Qiskit, the
OpenQASM 3 parser and PennyLane are optional (``pip install "qcreep[hardware]"``); they are
imported only when a function needs them.

Example:
    >>> import torch
    >>> from qcreep.layers import DataReUploadingLinear
    >>> from qcreep.hardware.export import to_qiskit
    >>> head = DataReUploadingLinear(16, 4, n_reps=2, dtype=torch.float64)
    >>> circuit = to_qiskit(head, torch.rand(16))              # doctest: +SKIP
    >>> [inst.operation.label for inst in circuit.data][-2:]   # doctest: +SKIP
    ['exp(iH/R)', 'SU(2^n)[2]']
"""

from __future__ import annotations

import copy
import importlib

import torch
import torch.nn.functional as F

from qcreep.checks import check_choice, check_int
from qcreep.errors import QcreepError
from qcreep.layers import DataReUploadingLinear, FlippedQuanv, FlippedQuanv3x3, QuantumLayer
from qcreep.sim import hamiltonian_embedding, pauli_matrices, pauli_words

INSTALL_HINT = 'pip install "qcreep[hardware]"'
DEFAULT_BASIS = ("cx", "rz", "sx", "x")
QUBIT_ORDER = "qcreep qubit k is Qiskit qubit n-1-k (Qiskit qubit 0 is the least significant bit)"
EXPORTABLE = "DataReUploadingLinear, FlippedQuanv3x3, or any qcreep.layers.QuantumLayer"


def require(module: str, what: str):
    """Import an optional package, or raise a one-line :class:`QcreepError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise QcreepError(f"{what} needs the optional package '{module.split('.')[0]}'; "
                          f"install it with: {INSTALL_HINT}") from None


def _check_layer(layer) -> str:
    if isinstance(layer, DataReUploadingLinear):
        kind = "data_reuploading"
    elif isinstance(layer, FlippedQuanv3x3) and layer.dilation == 1:
        kind = "flipped_quanv3x3"
    elif isinstance(layer, FlippedQuanv):
        raise QcreepError(f"circuits, shots and noise are implemented for the paper's 3x3 flipped quanvolution "
                          f"(2 qubits, no dilation); this layer has kernel {layer.kernel_hw[0]}x{layer.kernel_hw[1]}"
                          f" and dilation {layer.dilation}")
    elif isinstance(layer, QuantumLayer):
        return "program"  # any other quantum layer: its circuits for one input (QuantumLayer.circuits)
    else:
        raise QcreepError(f"only quantum layers can be exported ({EXPORTABLE}), got {type(layer).__name__}")
    if getattr(layer, "angles", "real") == "complex":
        raise QcreepError(f"{type(layer).__name__} has complex angles (the published code's non-unitary mode): "
                          "its gates are not unitary and no circuit implements them; only layers with "
                          "angles='real' can be exported")
    return kind


def _float64(layer):
    """A float64 copy of the layer (the parameters as they are, in double precision)."""
    return copy.deepcopy(layer).to(torch.float64)


# ---------------------------------------------------------------------------------------------
# The pieces of each circuit, from qcreep's own simulator (numpy, complex128)
# ---------------------------------------------------------------------------------------------

def _head_input(layer: DataReUploadingLinear, x) -> torch.Tensor:
    x = torch.as_tensor(x).detach()
    if x.is_complex():
        raise QcreepError("DataReUploadingLinear takes real input; got a complex tensor")
    if x.dim() == 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 1 or x.shape[0] != layer.in_features:
        raise QcreepError(f"export takes one input of {layer.in_features} features (shape ({layer.in_features},) "
                          f"or (1, {layer.in_features})), got {tuple(x.shape)}")
    return x.to(torch.float64)


def head_unitaries(layer: DataReUploadingLinear, x) -> tuple:
    """``(data, gates)``: the data unitary ``exp(i H / R)`` and the ``R`` gates ``SU(theta_r)``.

    ``data`` is a ``(2**n, 2**n)`` and ``gates`` an ``(R, 2**n, 2**n)`` complex128 numpy array, in
    qcreep's basis order (qubit 0 most significant), computed in float64 by the layer's own
    ``data_hamiltonians`` and ``trainable_unitaries``.
    """
    _check_layer(layer)
    x = _head_input(layer, x)
    layer = _float64(layer)
    with torch.no_grad():
        h = layer.data_hamiltonians(x[None])[0]
        data = hamiltonian_embedding(h, 1.0 / layer.n_reps, layer.resolved_solver())
        gates = layer.trainable_unitaries()
    return data.numpy(), gates.numpy()


def readout_parameters(layer, *, out_channel: int = 0) -> dict:
    """The classical post-processing of the measured values, as plain numbers (JSON-friendly).

    For the re-uploading head: ``{"kind": "probabilities", "out_features", "scale", "bias"}``, the
    output being ``scale * p_j + bias_j`` for ``j < out_features``. For the quanvolution:
    ``{"kind": "expectation", "in_channels", "weight", "bias"}`` for ``out_channel``, the output
    being ``bias + weight * sum_c <H_c>`` (``weight = 1 / C_in``).
    """
    kind = _check_layer(layer)
    with torch.no_grad():
        if kind == "data_reuploading":
            scale = 1.0 if layer.log_scale is None else float(layer.log_scale.double().exp())
            return {"kind": "probabilities", "out_features": layer.out_features, "scale": scale,
                    "bias": [float(b) for b in layer.bias.double()]}
        check_int(out_channel, "out_channel", 0, layer.out_channels - 1)
        return {"kind": "expectation", "in_channels": layer.in_channels, "weight": 1.0 / layer.in_channels,
                "bias": float(layer.bias[out_channel].double())}


def apply_readout(readout: dict, values) -> list[float] | float:
    """The layer's output from measured values and :func:`readout_parameters` (or ``metadata["readout"]``).

    ``values``: the ``2**n`` basis-state probabilities for the head (returns ``out_features``
    outputs); the ``C_in`` expectation values ``<H_c>``, one per input channel, for the
    quanvolution (returns one output).

    Example:
        >>> apply_readout({"kind": "probabilities", "out_features": 2, "scale": 1.0, "bias": [0.5, -0.5]},
        ...               [0.25, 0.25, 0.5, 0.0])
        [0.75, -0.25]
        >>> apply_readout({"kind": "expectation", "in_channels": 2, "weight": 0.5, "bias": 1.0}, [0.2, 0.4])
        1.3
    """
    values = [float(v) for v in values]
    if readout["kind"] == "probabilities":
        n = readout["out_features"]
        if len(values) < n:
            raise QcreepError(f"the readout needs at least {n} probabilities, got {len(values)}")
        return [readout["scale"] * p + b for p, b in zip(values[:n], readout["bias"])]
    if len(values) != readout["in_channels"]:
        raise QcreepError(f"the quanvolution's readout takes one expectation per input channel "
                          f"({readout['in_channels']}), got {len(values)}")
    return readout["bias"] + readout["weight"] * sum(values)


def _quanv_input(conv: FlippedQuanv3x3, x) -> torch.Tensor:
    x = torch.as_tensor(x).detach()
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.is_complex() or x.dim() != 3 or x.shape[0] != conv.in_channels:
        raise QcreepError(f"export takes one real image ({conv.in_channels}, H, W) or (1, {conv.in_channels}, H, W), "
                          f"got {tuple(x.shape)} {x.dtype}")
    return x.to(torch.float64)


def output_size(conv: FlippedQuanv3x3, height: int, width: int) -> tuple[int, int]:
    """``(H', W')``: the output size of the quanvolution for ``H x W`` inputs (as ``nn.Conv2d``)."""
    return ((height + 2 * conv.padding - 3) // conv.stride + 1, (width + 2 * conv.padding - 3) // conv.stride + 1)


def patch_hamiltonian(conv: FlippedQuanv3x3, x, *, in_channel: int = 0, position=(0, 0)) -> torch.Tensor:
    """The real symmetric 4x4 ``H = (A + A^T) / 2`` of the zero-padded 3x3 patch behind ``position``.

    ``position = (i, j)`` is an output position; the patch is the 3x3 window of input channel
    ``in_channel`` at rows ``i * stride - padding ...`` and columns ``j * stride - padding ...`` (zeros
    outside the image), as the layer sees it.
    """
    _check_layer(conv)
    x = _quanv_input(conv, x)
    check_int(in_channel, "in_channel", 0, conv.in_channels - 1)
    h_out, w_out = output_size(conv, x.shape[-2], x.shape[-1])
    if h_out < 1 or w_out < 1:
        raise QcreepError(f"FlippedQuanv3x3 needs images of at least 3x3 after padding, got {tuple(x.shape)}")
    if not (isinstance(position, tuple | list) and len(position) == 2):
        raise QcreepError(f"position is an output position (i, j), got {position!r}")
    i = check_int(position[0], "position row", 0, h_out - 1)
    j = check_int(position[1], "position column", 0, w_out - 1)
    image = F.pad(x[in_channel], (conv.padding,) * 4)
    top, left = i * conv.stride, j * conv.stride
    padded = F.pad(image[top:top + 3, left:left + 3], (0, 1, 0, 1))  # extra right column and bottom row
    return 0.5 * (padded + padded.T)


def pauli_decomposition(h: torch.Tensor) -> list[tuple[str, float]]:
    """``[(label, h_k)]`` with ``H = sum_k h_k P_k``, ``h_k = Tr(P_k H) / 2**n``, zero terms left out.

    Labels are qcreep's words (the first letter on qubit 0); the identity comes first. For a real
    symmetric ``H`` every coefficient is real.

    Example:
        >>> import torch
        >>> pauli_decomposition(torch.tensor([[1.0, 2.0], [2.0, -1.0]]))
        [('X', 2.0), ('Z', 1.0)]
    """
    h = torch.as_tensor(h).detach().to(torch.complex128)
    dim = h.shape[-1]
    n = dim.bit_length() - 1
    mats = pauli_matrices(n)
    coeffs = torch.einsum("kij,ji->k", mats, h).real / dim
    terms = [("I" * n, float(torch.diagonal(h).real.sum() / dim))]
    terms += list(zip(pauli_words(n), (float(c) for c in coeffs)))
    return [(label, c) for label, c in terms if abs(c) > 1e-15]


def patch_observable(conv: FlippedQuanv3x3, x, *, in_channel: int = 0, position=(0, 0)):
    """The patch Hamiltonian as a Qiskit ``SparsePauliOp`` (the same labels mean the same matrix)."""
    quantum_info = require("qiskit.quantum_info", "patch_observable")
    terms = pauli_decomposition(patch_hamiltonian(conv, x, in_channel=in_channel, position=position))
    return quantum_info.SparsePauliOp.from_list(terms)


def _quanv_gate(conv: FlippedQuanv3x3, out_channel: int, in_channel: int):
    check_int(out_channel, "out_channel", 0, conv.out_channels - 1)
    check_int(in_channel, "in_channel", 0, conv.in_channels - 1)
    with torch.no_grad():
        return _float64(conv).gates()[out_channel, in_channel].numpy()


# ---------------------------------------------------------------------------------------------
# Qiskit
# ---------------------------------------------------------------------------------------------

def to_qiskit(layer, x, *, out_channel: int = 0, in_channel: int = 0, position=(0, 0), measure: bool = False):
    """The layer's circuit for one input ``x`` as a ``qiskit.QuantumCircuit``.

    Args:
        layer: a :class:`~qcreep.layers.DataReUploadingLinear` or
            :class:`~qcreep.layers.FlippedQuanv3x3` with real angles, or any other
            :class:`~qcreep.layers.QuantumLayer` (the dressed circuit, a layer of your own): then the
            first of its circuits for ``x`` (:meth:`QuantumLayer.circuits`, :func:`program_to_qiskit`;
            ``metadata["circuits_for_this_input"]`` says how many there are).
        x: one input: ``(in_features,)`` for the head, one image ``(C_in, H, W)`` for the quanvolution
            (a leading batch dimension of 1 is accepted).
        out_channel, in_channel, position: the quanvolution's channel pair ``(o, c)`` and output
            position ``(i, j)``; ignored for the head.
        measure: the head only: measure every qubit (``measure_all``), so that a counts key read as a
            binary number is qcreep's basis index. The quanvolution's observable is not diagonal;
            measure it with :func:`measurement_circuits`.

    Returns:
        A ``QuantumCircuit`` on ``n`` qubits, qcreep qubit ``k`` on Qiskit qubit ``n - 1 - k``, whose
        ``Statevector(...).probabilities()`` are qcreep's. ``circuit.metadata`` holds ``layer``,
        ``qubit_order`` and ``readout`` (:func:`readout_parameters`); for the quanvolution also
        ``out_channel``, ``in_channel``, ``position`` and ``observable`` (``[[label, coefficient], ...]``,
        the terms of :func:`patch_observable`).
    """
    kind = _check_layer(layer)
    qiskit = require("qiskit", "to_qiskit")
    library = require("qiskit.circuit.library", "to_qiskit")
    if kind == "program":
        programs = layer.circuits(x)
        circuit = program_to_qiskit(programs[0], measure=measure)
        circuit.metadata["circuits_for_this_input"] = len(programs)
        return circuit
    if kind == "data_reuploading":
        data, gates = head_unitaries(layer, x)
        n = layer.n_qubits
        circuit = qiskit.QuantumCircuit(n, name="data_reuploading")
        circuit.h(range(n))
        data_gate = library.UnitaryGate(data, label="exp(iH/R)")
        for r, gate in enumerate(gates, start=1):
            # a matrix on qargs [0, ..., n-1] has Qiskit qubit n-1 as its most significant bit,
            # which is qcreep's qubit 0: the matrices go in unchanged
            circuit.append(data_gate, range(n))
            circuit.append(library.UnitaryGate(gate, label=f"SU(2^n)[{r}]"), range(n))
        circuit.metadata = {"layer": kind, "qubit_order": QUBIT_ORDER, "n_reps": layer.n_reps,
                            "readout": readout_parameters(layer)}
        if measure:
            circuit.measure_all()
        return circuit
    if measure:
        raise QcreepError("the patch Hamiltonian is not diagonal in the computational basis; measure it with "
                          "measurement_circuits(conv, x, ...) (one circuit per setting), or use measure=False")
    h = patch_hamiltonian(layer, x, in_channel=in_channel, position=position)
    gate = _quanv_gate(layer, out_channel, in_channel)
    circuit = qiskit.QuantumCircuit(2, name="flipped_quanv3x3")
    circuit.append(library.UnitaryGate(gate, label=f"SU(4)[{out_channel},{in_channel}]"), range(2))
    circuit.metadata = {"layer": kind, "qubit_order": QUBIT_ORDER, "out_channel": out_channel,
                        "in_channel": in_channel, "position": [int(p) for p in position],
                        "observable": [[label, c] for label, c in pauli_decomposition(h)],
                        "readout": readout_parameters(layer, out_channel=out_channel)}
    return circuit


def qubitwise_settings(terms) -> list[str]:
    """Measurement settings (one basis letter per qubit, qcreep order) covering the Pauli ``terms``.

    ``terms`` are labels or ``(label, coefficient)`` pairs; identity terms need no measurement. The
    words are grouped greedily into qubit-wise commuting groups (a word joins the first setting
    whose letters agree with it wherever both are not ``I``); unconstrained qubits are measured in
    ``Z``. For the patch Hamiltonian of a generic 3x3 patch this gives the 5 settings ``XX, XZ, ZX,
    ZZ, YY`` (its 9 non-identity words ``IX, IZ, XI, XX, XZ, YY, ZI, ZX, ZZ`` are covered by no
    fewer: ``XX, XZ, ZX, ZZ, YY`` pairwise do not commute qubit-wise).

    Example:
        >>> qubitwise_settings(["IX", "IZ", "XI", "XX", "XZ", "YY", "ZI", "ZX", "ZZ"])
        ['XX', 'XZ', 'YY', 'ZX', 'ZZ']
    """
    labels = [t if isinstance(t, str) else t[0] for t in terms]
    words = [w for w in labels if set(w) != {"I"}]
    # the words with most letters first, so that the single-qubit words join their settings
    words.sort(key=lambda w: (-sum(ch != "I" for ch in w), w))
    settings: list[list[str]] = []
    for word in words:
        for setting in settings:
            if all(a == "I" or b == "I" or a == b for a, b in zip(word, setting)):
                setting[:] = [b if b != "I" else a for a, b in zip(word, setting)]
                break
        else:
            settings.append(list(word))
    return sorted("".join(ch if ch != "I" else "Z" for ch in s) for s in settings)


def assign_terms(terms, settings) -> dict[str, list]:
    """Each non-identity term of ``terms`` under the first of ``settings`` that measures it.

    A setting measures a word when they agree on every qubit where the word is not ``I``. Returns
    ``{setting: [term, ...]}`` (terms as given); a term that no setting measures is an error.

    Example:
        >>> assign_terms(["XI", "ZZ", "IZ"], ["XX", "ZZ"])
        {'XX': ['XI'], 'ZZ': ['ZZ', 'IZ']}
    """
    groups: dict[str, list] = {s: [] for s in settings}
    for term in terms:
        label = term if isinstance(term, str) else term[0]
        if set(label) == {"I"}:
            continue
        for setting in settings:
            if all(a == "I" or a == b for a, b in zip(label, setting)):
                groups[setting].append(term)
                break
        else:
            raise QcreepError(f"no measurement setting of {', '.join(settings)} measures the word {label}")
    return groups


def measurement_circuits(conv: FlippedQuanv3x3, x, *, out_channel: int = 0, in_channel: int = 0,
                         position=(0, 0)) -> list:
    """One measured circuit per qubit-wise commuting setting of the patch observable.

    Returns ``[(setting, circuit)]``: the state preparation of :func:`to_qiskit`, a basis change on
    each qubit (``H`` for ``X``, ``S^dagger H`` for ``Y``, nothing for ``Z``) and ``measure_all``.
    The expectation of a word ``P`` of the setting is the mean of ``(-1)**(number of 1s on P's
    qubits)`` over the shots; ``<H> = h_I + sum_k h_k <P_k>``.
    """
    base = to_qiskit(conv, x, out_channel=out_channel, in_channel=in_channel, position=position)
    out = []
    for setting in qubitwise_settings(base.metadata["observable"]):
        circuit = base.copy()
        circuit.metadata = dict(base.metadata, setting=setting)
        for k, letter in enumerate(setting):
            qubit = len(setting) - 1 - k  # qcreep qubit k
            if letter == "Y":
                circuit.sdg(qubit)
            if letter in "XY":
                circuit.h(qubit)
        circuit.measure_all()
        out.append((setting, circuit))
    return out


# ---------------------------------------------------------------------------------------------
# OpenQASM 3
# ---------------------------------------------------------------------------------------------

def transpile_circuit(circuit, *, basis=DEFAULT_BASIS, optimization_level: int = 1, seed_transpiler: int = 0):
    """``qiskit.transpile`` to the gate ``basis`` (no coupling map, so no routing and no qubit moves)."""
    qiskit = require("qiskit", "transpiling")
    check_int(optimization_level, "optimization_level", 0, 3)
    basis = [str(b) for b in basis]
    if not basis:
        raise QcreepError("basis names at least one gate, e.g. ('cx', 'rz', 'sx', 'x')")
    out = qiskit.transpile(circuit, basis_gates=basis, optimization_level=optimization_level,
                           seed_transpiler=seed_transpiler)
    layout = out.layout
    if layout is not None and layout.final_layout is not None:
        perm = layout.final_index_layout()
        if perm != list(range(circuit.num_qubits)):
            raise QcreepError(f"the transpiler permuted the qubits ({perm}) at optimization_level="
                              f"{optimization_level}; use a lower level")
    return out


def to_qasm3(layer, x, *, out_channel: int = 0, in_channel: int = 0, position=(0, 0), measure: bool = False,
             basis=DEFAULT_BASIS, optimization_level: int = 1, seed_transpiler: int = 0) -> str:
    """OpenQASM 3 text of :func:`to_qiskit`'s circuit, transpiled to ``basis``.

    The unitary gates are decomposed by ``qiskit.transpile(basis_gates=basis, optimization_level=...,
    seed_transpiler=...)`` and written with ``qiskit.qasm3.dumps``; the result includes
    ``stdgates.inc``, parses with ``openqasm3.parse`` and loads back with ``qiskit.qasm3.loads``. The
    circuit equals the exported one up to a global phase; qubit ``k`` of the text is Qiskit's qubit
    ``k`` (qcreep's ``n - 1 - k``). The readout (and, for the quanvolution, the observable) is not
    part of the text: take it from :func:`to_qiskit`'s ``metadata`` or :func:`readout_parameters`.
    ``measure`` as in :func:`to_qiskit` (the head only).
    """
    qasm3 = require("qiskit.qasm3", "to_qasm3")
    circuit = to_qiskit(layer, x, out_channel=out_channel, in_channel=in_channel, position=position,
                        measure=measure)
    compiled = transpile_circuit(circuit, basis=basis, optimization_level=optimization_level,
                                 seed_transpiler=seed_transpiler)
    return qasm3.dumps(compiled)


# ---------------------------------------------------------------------------------------------
# PennyLane
# ---------------------------------------------------------------------------------------------

def to_pennylane(layer, x, *, out_channel: int = 0, in_channel: int = 0, position=(0, 0)):
    """A PennyLane QNode on ``default.qubit`` computing the layer's measured values for ``x``.

    Wire ``k`` is qcreep's qubit ``k`` (PennyLane's wire 0 is the most significant bit, as in
    qcreep). For the head the QNode returns ``qml.probs`` of all wires (qcreep's ``p_j``); for the
    quanvolution, ``qml.expval`` of the patch Hamiltonian as a sum of Pauli words for the pair
    ``(out_channel, in_channel)`` at ``position``. The gates are ``qml.QubitUnitary`` of the same
    matrices as :func:`to_qiskit`. Call it with no arguments: ``to_pennylane(layer, x)()``. The
    classical readout is in the QNode's attribute ``qcreep_metadata`` (as ``to_qiskit``'s metadata).
    """
    kind = _check_layer(layer)
    qml = require("pennylane", "to_pennylane")
    if kind == "program":
        return program_to_pennylane(layer.circuits(x)[0])
    if kind == "data_reuploading":
        data, gates = head_unitaries(layer, x)
        wires = list(range(layer.n_qubits))
        metadata = {"layer": kind, "qubit_order": "PennyLane wire k is qcreep qubit k", "n_reps": layer.n_reps,
                    "readout": readout_parameters(layer)}

        def circuit():
            for w in wires:
                qml.Hadamard(wires=w)
            for gate in gates:
                qml.QubitUnitary(data, wires=wires)
                qml.QubitUnitary(gate, wires=wires)
            return qml.probs(wires=wires)
    else:
        h = patch_hamiltonian(layer, x, in_channel=in_channel, position=position)
        gate = _quanv_gate(layer, out_channel, in_channel)
        terms = pauli_decomposition(h)
        wire_map = {0: 0, 1: 1}
        ops = [qml.pauli.string_to_pauli_word(label, wire_map=wire_map) for label, _ in terms]
        observable = qml.dot([c for _, c in terms], ops)
        metadata = {"layer": kind, "qubit_order": "PennyLane wire k is qcreep qubit k",
                    "out_channel": out_channel, "in_channel": in_channel, "position": [int(p) for p in position],
                    "observable": [[label, c] for label, c in terms],
                    "readout": readout_parameters(layer, out_channel=out_channel)}

        def circuit():
            qml.QubitUnitary(gate, wires=[0, 1])
            return qml.expval(observable)

    qnode = qml.QNode(circuit, qml.device("default.qubit", wires=len(layer_wires(layer))))
    qnode.qcreep_metadata = metadata
    return qnode


def layer_wires(layer) -> list[int]:
    """The wires (qcreep's qubits) of a layer's circuit: ``n_qubits`` for the head, 2 for the quanvolution."""
    kind = _check_layer(layer)
    return list(range(layer.n_qubits if kind in ("data_reuploading", "program") else 2))


def check_format(fmt: str) -> str:
    """An export format: ``qiskit``, ``pennylane`` or ``qasm3``."""
    return check_choice(fmt, "export format", ("qiskit", "pennylane", "qasm3"))


# ---------------------------------------------------------------------------------------------
# Any quantum layer: its circuits for one input (qcreep.sim.program), translated gate by gate
# ---------------------------------------------------------------------------------------------

def program_to_qiskit(program, *, measure: bool = False):
    """A :class:`qcreep.sim.program.Circuit` as a ``qiskit.QuantumCircuit`` of ``UnitaryGate`` blocks.

    qcreep qubit ``k`` is Qiskit qubit ``n - 1 - k``, so a gate's matrix (its first listed qubit
    most significant) goes onto the reversed Qiskit qubits unchanged, and ``Statevector(circuit).data``
    equals ``program.statevector()`` entry by entry. ``circuit.metadata`` keeps the program's label,
    metadata and qubit order; an observable is not part of a Qiskit circuit and stays with the program.
    A program with an ``initial`` state starts with a ``StatePreparation`` of it on Qiskit qubits
    ``0 .. n-1``: with the reversed qubits its amplitudes are in qcreep's order already, so they go in
    unchanged (:func:`to_qasm3` decomposes it, like the unitary gates, when transpiling).
    ``measure=True`` adds ``measure_all`` (for a program that measures probabilities).
    """
    qiskit = require("qiskit", "program_to_qiskit")
    library = require("qiskit.circuit.library", "program_to_qiskit")
    n = program.n_qubits
    circuit = qiskit.QuantumCircuit(n, name=program.label or "qcreep")
    if program.initial is not None:
        # on Qiskit qubits 0..n-1 (little-endian) the index of a basis state is qcreep's index (qcreep
        # qubit k is Qiskit qubit n-1-k), so the amplitudes go in unchanged
        circuit.append(library.StatePreparation(_initial_state(program), label="initial state"), range(n))
    for gate in program.gates:
        qargs = [n - 1 - q for q in reversed(gate.qubits)]
        circuit.append(library.UnitaryGate(gate.matrix.detach().to(torch.complex128).numpy(), label=gate.label),
                       qargs)
    circuit.metadata = {"layer": program.label, "qubit_order": QUBIT_ORDER, **program.metadata}
    if measure:
        obs = program.observable
        if obs is not None and bool((obs - torch.diag(torch.diagonal(obs))).abs().max() > 0):
            raise QcreepError("this circuit measures an observable that is not diagonal in the computational basis; "
                              "measure=True is for circuits read from basis-state counts")
        circuit.measure_all()
    return circuit


def _initial_state(program):
    """The program's initial state as a numpy complex128 vector, renormalised to norm 1 in double precision
    (:class:`qcreep.sim.program.Circuit` has checked it to 1e-9; the toolkits check more tightly)."""
    state = program.initial.detach().to(torch.complex128)
    return (state / torch.linalg.vector_norm(state)).numpy()


def program_to_pennylane(program):
    """A :class:`qcreep.sim.program.Circuit` as a PennyLane QNode on ``default.qubit`` (wire ``k`` is
    qubit ``k``): ``qml.StatePrep`` of the ``initial`` state if the program has one, ``qml.QubitUnitary``
    per gate, then ``qml.probs`` of all wires, or ``qml.expval`` of the observable as a
    ``qml.Hermitian``. Call it with no arguments."""
    qml = require("pennylane", "program_to_pennylane")
    wires = list(range(program.n_qubits))
    gates = [(g.matrix.detach().to(torch.complex128).numpy(), list(g.qubits)) for g in program.gates]
    observable = None if program.observable is None else program.observable.detach().to(torch.complex128).numpy()
    initial = None if program.initial is None else _initial_state(program)

    def circuit():
        if initial is not None:
            qml.StatePrep(initial, wires=wires)  # wire 0 most significant, as qcreep's qubit 0
        for matrix, on in gates:
            qml.QubitUnitary(matrix, wires=on)
        if observable is None:
            return qml.probs(wires=wires)
        return qml.expval(qml.Hermitian(observable, wires=wires))

    qnode = qml.QNode(circuit, qml.device("default.qubit", wires=len(wires)))
    qnode.qcreep_metadata = {"layer": program.label, "qubit_order": "PennyLane wire k is qcreep qubit k",
                             **program.metadata}
    return qnode
