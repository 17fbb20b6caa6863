r"""Angle re-uploading (Pérez-Salinas et al.) for dense slots, and its product-state classical twin.

:class:`AngleReuploading` is a drop-in for ``nn.Linear(in, out)``, after A. Pérez-Salinas,
A. Cervera-Lierta, E. Gil-Fuster, J. I. Latorre, "Data re-uploading for a universal quantum
classifier", Quantum 4, 226 (2020), arXiv:1907.02085. The features are uploaded in groups of three
as the angles of general single-qubit rotations, scaled elementwise by trainable weights and
shifted by trainable offsets, and re-uploaded in each of ``L`` layers, between trainable rotations
and CZ entanglers:

    x -> zero-padded to 3 G features: G = ceil(in / 3) groups x_g = (x_3g, x_3g+1, x_3g+2)
    a_lg = w_lg ∘ x_g + b_lg                          (w: L x in weights, b: L x G x 3 offsets)
    group g -> qubit g mod n, as its (floor(g / n) + 1)-th upload of the layer
    U_l(x) = (x)_q Rot(a_l,g_K) ... Rot(a_l,g_1)      (on qubit q, its groups g_1 < ... < g_K)
    R_l = (x)_q Rot(theta_lq)                         (trainable rotations, theta: L x n x 3)
    |psi(x)> = R_L CZ U_L(x) ... R_1 CZ U_1(x) |0...0>
    y_j = s <psi| Z_j |psi> + c_j,   s = exp(a),   j < out

``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)`` (PennyLane's ``qml.Rot``). ``CZ`` is a
CZ on every pair ``(q, q + 1 mod n)`` (a ring) for ``n >= 3``, the one CZ ``(0, 1)`` for ``n = 2``,
and nothing for one qubit; CZs commute, so their order does not matter. The paper's classifier
uploads ``U(theta + w ∘ x)`` for each group of three in turn on a qubit, with CZs between the
layers of its multi-qubit version; here the groups are spread round-robin over the qubits (a layer
has ``G`` uploads whatever the register size), and each layer ends with a trainable ``Rot`` on
every qubit after the CZs, so that every gate acts on what is measured. The readout is ``<Z_j>``
of the first ``out`` qubits times one learned scale ``s = exp(a)`` (``a`` starting at 0) plus
biases ``c_j`` starting at 0, as the other heads read out.

Qubits: ``n = max(4, out)`` (one qubit per output, at least four), or the ``width`` option
(``>= out``); at most 12 (:data:`MAX_ANGLE_QUBITS`), so :meth:`AngleReuploading.fits` refuses
slots with more than 12 outputs (or more outputs than a given limit). The input size never adds
qubits: a big input gives more gates, not a larger register. The paper's 12,544 -> 10 head runs on
10 qubits with ``G = 4182`` uploads per layer, 419 on each qubit.

Parameters: ``L in`` (weights) ``+ 3 L G`` (offsets) ``+ 3 L n`` (rotations) ``+ out + 1``
(biases, scale), ``L = 2`` by default: 50,251 for 12,544 -> 10 (``nn.Linear`` has 125,450), 48 for
iris' 4 -> 3. Start: weights ``N(0, 1 / K)`` with ``K = ceil(G / n)`` uploads per qubit and layer
(so that the composed rotation of a qubit moves by ``O(|x|)``, not ``O(sqrt(K) |x|)``), offsets 0,
rotations uniform in ``[0, 2 pi)``.

Simulation. Between two CZ rings every gate is a single-qubit gate, so the fast path composes
them: the uploads of a qubit (and the rotation of the layer before) become one ``2 x 2`` unitary
per example. It composes them as unit quaternions (``q0 I - i q.sigma``; a product of two is a
Hamilton product, 16 real multiplications), batched over examples, layers and qubits, in
``ceil(log2 K)`` rounds of pairwise products. The ``(B, 2^n)`` complex statevector then sees
``(L + 1) n`` batched ``2 x 2`` contractions and ``L`` CZ rings, each one fixed ``+-1`` sign
vector. Cost ``O(B L G)`` for the gates plus ``O(B L n 2^n)`` for the state, instead of
``O(B L G 2^n)`` gate by gate: about 0.4 s forward and backward for a batch of 256 on the
12,544 -> 10 head, on one core. :meth:`AngleReuploading.circuits` lists every gate (``L G``
uploads), and ``forward_reference`` simulates that list gate by gate.

Each output ``<Z_j>`` is a trigonometric polynomial of the angles ``a_lg`` (each angle enters one
gate once: degree one in its cosine and sine), bounded in ``[-1, 1]``.

:class:`AngleReuploadingTwin` is the same circuit without the correlations that entangling
creates, its product-state (mean-field) simulation: a classical map with the same parameter
tensors, so exactly the same count (and under the same seed the same values). Each qubit is a real
Bloch vector ``r_q`` (``|r_q| <= 1``, from ``(0, 0, 1)``), turned by the ``SO(3)`` rotations of the
same single-qubit gates; each CZ ring is replaced by what it does to a qubit's marginal when the
qubits are uncorrelated: ``x`` and ``y`` of ``r_q`` are multiplied by ``z`` of each ring
neighbour (the CZ dephases ``q`` by ``<Z>`` of its partner), ``z`` is unchanged. The readout is
``y_j = s z_j + c_j``, ``z_j`` the ``z`` of the final ``r_j``. The twin's outputs are
trigonometric polynomials of the same angles, bounded in ``[-1, 1]``, as the circuit's are. The
marginals are exact through the first CZ ring, so with ``L = 1`` (or one qubit) the twin computes
exactly the circuit's function: that circuit measures nothing that a product state would not give.
From ``L = 2`` on the circuit's qubits are correlated where the twin's are not, and a gap between
the two is what entanglement adds.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.layers.amplitude import rot_matrix
from qcreep.layers.base import QuantumLayer
from qcreep.layers.registry import register_layer
from qcreep.sim.program import Circuit, Gate

#: The register size when no ``width`` is given and ``out`` is at most 4.
DEFAULT_WIDTH = 4
#: Default number of re-upload layers ``L``.
DEFAULT_LAYERS = 2
#: The most qubits this layer simulates (one output per qubit, so at most 12 outputs).
MAX_ANGLE_QUBITS = 12


def angle_qubits(out_features: int, width: int | None = None) -> int:
    """The register size: ``width`` if given, else ``max(4, out)`` (10 for the 12544 -> 10 head)."""
    return max(DEFAULT_WIDTH, out_features) if width is None else width


def feature_groups(in_features: int) -> int:
    """``G = ceil(in / 3)``: the groups of three features (the last zero-padded), 4182 for 12544."""
    return -(-in_features // 3)


def cz_pairs(width: int) -> list[tuple[int, int]]:
    """The CZs of a layer: the ring ``(q, q + 1 mod n)`` for ``n >= 3``, ``(0, 1)`` for 2 qubits, none for 1."""
    if width < 2:
        return []
    if width == 2:
        return [(0, 1)]
    return [(q, (q + 1) % width) for q in range(width)]


def angle_parameter_count(in_features: int, out_features: int, *, layers: int = DEFAULT_LAYERS,
                          width: int | None = None) -> int:
    """``L in + 3 L G + 3 L n + out + 1`` (module docstring): 50251 for 12544 -> 10."""
    n = angle_qubits(out_features, width)
    return layers * (in_features + 3 * feature_groups(in_features) + 3 * n) + out_features + 1


def rot_quaternion(w: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` real: the unit quaternion ``(q0, q1, q2, q3)`` of ``Rot(phi, theta, omega)`` for ``w = (..., 3)``.

    A single-qubit unitary of determinant 1 is ``q0 I - i (q1 X + q2 Y + q3 Z)`` with ``|q| = 1``, and the
    product of two is the Hamilton product of their quaternions (:func:`hamilton`). For ``Rot``:
    ``(cos(t/2) cos((p+o)/2), sin(t/2) sin((p-o)/2), sin(t/2) cos((p-o)/2), cos(t/2) sin((p+o)/2))``.
    """
    phi, theta, omega = w.unbind(-1)
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    plus, minus = (phi + omega) / 2, (phi - omega) / 2
    return torch.stack((c * torch.cos(plus), s * torch.sin(minus), s * torch.cos(minus), c * torch.sin(plus)), -1)


def hamilton(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``(..., 4)``: the quaternion of ``U_p U_q`` (``q`` applied first), elementwise over the leading axes."""
    p0, p1, p2, p3 = p.unbind(-1)
    q0, q1, q2, q3 = q.unbind(-1)
    return torch.stack((p0 * q0 - p1 * q1 - p2 * q2 - p3 * q3,
                        p0 * q1 + p1 * q0 + p2 * q3 - p3 * q2,
                        p0 * q2 + p2 * q0 + p3 * q1 - p1 * q3,
                        p0 * q3 + p3 * q0 + p1 * q2 - p2 * q1), -1)


def compose(quats: torch.Tensor) -> torch.Tensor:
    """``(..., K, n, 4) -> (..., n, 4)``: the quaternion of ``U_{K-1} ... U_1 U_0`` (later uploads on the left).

    Pairwise Hamilton products in ``ceil(log2 K)`` rounds (an odd count is padded with the identity at the end).
    """
    while quats.shape[-3] > 1:
        if quats.shape[-3] % 2:
            one = torch.zeros(4, dtype=quats.dtype, device=quats.device)
            one[0] = 1
            quats = torch.cat((quats, one.expand(*quats.shape[:-3], 1, *quats.shape[-2:])), -3)
        quats = hamilton(quats[..., 1::2, :, :], quats[..., 0::2, :, :])
    return quats[..., 0, :, :]


def quaternion_matrix(q: torch.Tensor) -> torch.Tensor:
    """``(..., 2, 2)`` complex ``q0 I - i (q1 X + q2 Y + q3 Z)``, built from its real and imaginary parts."""
    q0, q1, q2, q3 = q.unbind(-1)
    top = torch.stack((torch.complex(q0, -q3), torch.complex(-q2, -q1)), -1)
    bottom = torch.stack((torch.complex(q2, -q1), torch.complex(q0, q3)), -1)
    return torch.stack((top, bottom), -2)


def quaternion_rotation(q: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` real: the rotation of the Bloch vector by the unitary of quaternion ``q``.

    ``U = cos(a/2) I - i sin(a/2) n.sigma`` (quaternion ``(cos(a/2), sin(a/2) n)``) turns Bloch vectors by
    ``a`` about ``n``: the usual rotation matrix of a unit quaternion.
    """
    w, x, y, z = q.unbind(-1)
    rows = ((1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
            (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
            (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)))
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def _check_sizes(owner: str, in_features, out_features, layers, width) -> int:
    check_int(in_features, f"{owner} in_features", 1)
    check_int(out_features, f"{owner} out_features", 1)
    check_int(layers, f"{owner} layers", 1)
    if width is not None:
        check_int(width, f"{owner} width (qubits)", 1)
        if width < out_features:
            raise QcreepError(f"{owner} width={width} is less than out_features={out_features}: each output is "
                              "<Z> of its own qubit")
    return angle_qubits(out_features, width)


class _AngleUploads(nn.Module):
    """The parameters and the angles shared by the circuit and its twin (module docstring)."""

    def _init_uploads(self, in_features: int, out_features: int, layers: int, n: int, dtype, device):
        dtype = dtype or torch.get_default_dtype()
        if dtype not in (torch.float32, torch.float64):
            raise QcreepError(f"{type(self).__name__} takes dtype float32 or float64, got {dtype}")
        self.in_features, self.out_features, self.layers, self.width = in_features, out_features, layers, n
        self.groups = feature_groups(in_features)
        self.per_qubit = -(-self.groups // n)  # K: uploads per qubit and layer
        self.weights = nn.Parameter(torch.randn(layers, in_features, dtype=dtype, device=device)
                                    / math.sqrt(self.per_qubit))
        self.offsets = nn.Parameter(torch.zeros(layers, self.groups, 3, dtype=dtype, device=device))
        self.rotations = nn.Parameter(2 * math.pi * torch.rand(layers, n, 3, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device))
        self.log_scale = nn.Parameter(torch.zeros((), dtype=dtype, device=device))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, K, n, 3)``: ``a_lg = w_lg ∘ x_g + b_lg`` with group ``g = k n + q`` at ``[:, l, k, q]``.

        Slots past the last group (when ``n`` does not divide ``G``) hold zero angles: ``Rot(0) = I``.
        """
        slots = self.per_qubit * self.width
        scaled = nn.functional.pad(x[:, None, :] * self.weights, (0, 3 * slots - self.in_features))
        offsets = nn.functional.pad(self.offsets, (0, 0, 0, slots - self.groups))
        angles = scaled.reshape(x.shape[0], self.layers, slots, 3) + offsets
        return angles.reshape(x.shape[0], self.layers, self.per_qubit, self.width, 3)

    def local_quaternions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-qubit gates between the CZ rings, as unit quaternions (:func:`rot_quaternion`).

        ``(B, L, n, 4)``: the gate of qubit ``q`` before CZ ring ``l``, its uploads of layer ``l`` (for
        ``l >= 1`` with the trainable ``Rot(theta_{l-1,q})`` of the layer before applied first); and
        ``(n, 4)``: the last layer's ``Rot(theta_{L-1,q})``, after the last ring.
        """
        uploads = compose(rot_quaternion(self.angles(x)))  # (B, L, n, 4)
        rotations = rot_quaternion(self.rotations)  # (L, n, 4)
        if self.layers > 1:
            later = hamilton(uploads[:, 1:], rotations[:-1].expand_as(uploads[:, 1:]))
            uploads = torch.cat((uploads[:, :1], later), 1)
        return uploads, rotations[-1]

    def _flatten(self, x: torch.Tensor):
        name = type(self).__name__
        if x.is_complex():
            raise QcreepError(f"{name} takes real input; got a complex tensor")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise QcreepError(f"{name} expects input (*, {self.in_features}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        return (x.to(self.weights.dtype) if x.dtype != self.weights.dtype else x), lead

    def readout(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * z + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, lead = self._flatten(x)
        return self.readout(self.expectations(x)).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, width={self.width}, layers={self.layers}, "
                f"groups={self.groups}, params={self.num_parameters}")


class AngleReuploading(_AngleUploads, QuantumLayer):
    """Pérez-Salinas et al.'s data re-uploading in groups of three features, CZ rings, ``<Z_j>`` (module docstring).

    Args:
        in_features, out_features: the sizes of the ``nn.Linear`` it replaces.
        layers: the re-upload layers ``L`` (default 2).
        width: the qubits ``n`` (default ``max(4, out)``; at least ``out``, at most 12).

    Example:
        >>> import torch
        >>> head = AngleReuploading(12544, 10)
        >>> head.n_qubits, head.groups, head.num_parameters
        (10, 4182, 50251)
        >>> AngleReuploading(4, 3)(torch.randn(5, 4)).shape
        torch.Size([5, 3])
    """

    slot_kind = "dense"
    circuit_parameters = ("weights", "offsets", "rotations")

    def __init__(self, in_features: int, out_features: int, *, layers: int = DEFAULT_LAYERS,
                 width: int | None = None, dtype=None, device=None):
        super().__init__()
        n = _check_sizes("AngleReuploading", in_features, out_features, layers, width)
        if n > MAX_ANGLE_QUBITS:
            raise QcreepError(f"AngleReuploading({in_features} -> {out_features}) needs {n} qubits (one per output, "
                              f"at least {DEFAULT_WIDTH}); it simulates at most {MAX_ANGLE_QUBITS}")
        self._init_uploads(in_features, out_features, layers, n, dtype, device)
        self.n_qubits = n
        index = torch.arange(2**n)
        bits = torch.stack([(index >> (n - 1 - q)) & 1 for q in range(n)], -1)  # qubit 0 most significant
        signs = (1 - 2 * bits).to(self.weights.dtype)  # (2^n, n): the eigenvalue of Z_q on each basis state
        cz = torch.ones(2**n, dtype=self.weights.dtype)
        for a, b in cz_pairs(n):
            cz = cz * (1 - 2 * (bits[:, a] & bits[:, b])).to(cz.dtype)
        self.register_buffer("_z_signs", signs[:, :out_features].contiguous().to(device), persistent=False)
        self.register_buffer("_cz_signs", cz.to(device), persistent=False)

    @classmethod
    def qubits_for(cls, slot) -> int:
        return angle_qubits(slot.out_features)

    @classmethod
    def scan_slot(cls, n_qubits: int):
        """An 8 -> 1 slot at width ``n_qubits``: the register size is the ``width`` option."""
        from qcreep.slots import DenseSlot

        return DenseSlot(8, 1), {"width": n_qubits}

    @classmethod
    def fits(cls, slot, max_qubits: int | None = None) -> str | None:
        kind = getattr(slot, "kind", None)
        if kind != "dense":
            return f"fills dense slots, not {kind} slots"
        n = cls.qubits_for(slot)
        limit = MAX_ANGLE_QUBITS if max_qubits is None else min(int(max_qubits), MAX_ANGLE_QUBITS)
        return None if n <= limit else f"needs {n} qubits, more than the limit of {limit}"

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L, n, 2, 2)`` and ``(n, 2, 2)`` complex: :meth:`local_quaternions` as matrices."""
        local, last = self.local_quaternions(x)
        return quaternion_matrix(local), quaternion_matrix(last)

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2^n)`` complex: the final states for a flat batch ``(B, in)``."""
        n, dim, batch = self.n_qubits, 2**self.n_qubits, x.shape[0]
        local, last = self.gates(x)
        state = torch.zeros(batch, dim, dtype=local.dtype, device=x.device)
        state[:, 0] = 1
        cz = self._cz_signs.to(local.dtype)
        for layer in range(self.layers):
            for q in range(n):  # each example's 2x2 on qubit q's axis (qubit 0 most significant)
                v = state.reshape(batch, 2**q, 2, 2 ** (n - 1 - q))
                state = torch.einsum("bji,bpic->bpjc", local[:, layer, q], v).reshape(batch, dim)
            state = state * cz
        for q in range(n):
            v = state.reshape(batch, 2**q, 2, 2 ** (n - 1 - q))
            state = torch.einsum("ji,bpic->bpjc", last[q], v).reshape(batch, dim)
        return state

    def expectations(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, out)``: ``<Z_j>`` for a flat batch ``(B, in)``, from the real and imaginary parts of the states."""
        state = self.states(x)
        probs = state.real * state.real + state.imag * state.imag
        return probs @ self._z_signs

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Each input on its own, gate by gate, all ``L G`` uploads (:mod:`qcreep.sim.program`; slow)."""
        x, lead = self._flatten(x)
        rows = [self.from_measurements(row, [c.measured() for c in self.circuits(row)]) for row in x]
        out = torch.stack(rows).to(x.dtype) if rows else x.new_zeros(0, self.out_features)
        return out.reshape(*lead, self.out_features)

    def circuits(self, x: torch.Tensor) -> list[Circuit]:
        """The one circuit for input ``x``: per layer the ``G`` uploads ``Rot(a_lg)`` (group ``g`` on qubit
        ``g mod n``), the CZ ring and a ``Rot(theta_lq)`` on every qubit, measuring the basis probabilities."""
        x = torch.as_tensor(x).detach()
        if x.dim() == 2 and x.shape[0] == 1:
            x = x[0]
        if x.is_complex() or x.dim() != 1 or x.shape[0] != self.in_features:
            raise QcreepError(f"AngleReuploading.circuits takes one real input of {self.in_features} features, "
                              f"got {tuple(x.shape)} {x.dtype}")
        n = self.n_qubits
        with torch.no_grad():
            x64 = x.to(torch.float64)
            w = self.weights.detach().double()
            scaled = nn.functional.pad(w * x64, (0, 3 * self.groups - self.in_features)).reshape(self.layers, -1, 3)
            angles = scaled + self.offsets.detach().double()  # (L, G, 3), computed here from the parameters
            rotations = self.rotations.detach().double()
        cz = torch.diag(torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=torch.complex128))
        gates = []
        for layer in range(self.layers):
            gates += [Gate(f"U{layer},{g}", (g % n,), rot_matrix(angles[layer, g])) for g in range(self.groups)]
            gates += [Gate("CZ", pair, cz) for pair in cz_pairs(n)]
            gates += [Gate(f"Rot{layer},{q}", (q,), rot_matrix(rotations[layer, q])) for q in range(n)]
        return [Circuit(n, gates, label="AngleReuploading", metadata={"measures": "probabilities"})]

    def from_measurements(self, x: torch.Tensor, values: list) -> torch.Tensor:
        """``(out,)``: ``s <Z_j> + c_j``, the ``<Z_j>`` from the measured basis probabilities."""
        probs = torch.as_tensor(values[0], dtype=torch.float64)
        with torch.no_grad():
            return self.log_scale.double().exp() * (probs @ self._z_signs.double()) + self.bias.double()

    @torch.no_grad()
    def physicality(self, x: torch.Tensor | None = None) -> dict:
        """``|U^H U - I|`` of the trainable rotations and (given inputs) of every composed per-example gate, and
        the norms of the final states."""
        def error(m):
            eye = torch.eye(2, dtype=m.dtype, device=m.device)
            return float((m.conj().transpose(-1, -2) @ m - eye).abs().max())

        report = {"max_unitarity_error": error(rot_matrix(self.rotations))}
        if x is not None:
            flat, _ = self._flatten(x)
            local, last = self.gates(flat)
            report["max_unitarity_error"] = max(report["max_unitarity_error"], error(local), error(last))
            state = self.states(flat)
            norms = (state.real * state.real + state.imag * state.imag).sum(-1).sqrt()
            report.update(min_state_norm=float(norms.min()), max_state_norm=float(norms.max()))
        return report


class AngleReuploadingTwin(_AngleUploads):
    """The classical twin of :class:`AngleReuploading`: its product-state simulation (module docstring).

    The same parameters (names, shapes, initialisation, so the same count); each qubit a Bloch vector
    rotated by the ``SO(3)`` images of the same gates, each CZ replaced by the dephasing it causes on
    uncorrelated qubits. No register limit: the cost is linear in the width.

    Example:
        >>> AngleReuploadingTwin(12544, 10).num_parameters, AngleReuploading(12544, 10).num_parameters
        (50251, 50251)
    """

    def __init__(self, in_features: int, out_features: int, *, layers: int = DEFAULT_LAYERS,
                 width: int | None = None, dtype=None, device=None):
        super().__init__()
        n = _check_sizes("AngleReuploadingTwin", in_features, out_features, layers, width)
        self._init_uploads(in_features, out_features, layers, n, dtype, device)
        neighbours = [[] for _ in range(n)]
        for a, b in cz_pairs(n):
            neighbours[a].append(b)
            neighbours[b].append(a)
        self.neighbours = neighbours

    def bloch_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n, 3)``: the final Bloch vectors of the uncorrelated qubits for a flat batch ``(B, in)``."""
        local, last = self.local_quaternions(x)
        local, last = quaternion_rotation(local), quaternion_rotation(last)  # (B, L, n, 3, 3), (n, 3, 3)
        r = torch.zeros(x.shape[0], self.width, 3, dtype=local.dtype, device=x.device)
        r[..., 2] = 1
        for layer in range(self.layers):
            r = torch.einsum("bqij,bqj->bqi", local[:, layer], r)
            z = r[..., 2]
            # a CZ on uncorrelated qubits multiplies x and y of each by <Z> of the other, and leaves z
            factors = [math.prod((z[:, b] for b in self.neighbours[q]), start=torch.ones_like(z[:, 0]))
                       for q in range(self.width)]
            r = torch.cat((r[..., :2] * torch.stack(factors, -1)[..., None], z[..., None]), -1)
        return torch.einsum("qij,bqj->bqi", last, r)

    def expectations(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, out)``: the ``z`` components of the first ``out`` Bloch vectors, in ``[-1, 1]``."""
        return self.bloch_vectors(x)[:, : self.out_features, 2]


@register_layer("angle_reuploading", slot_kind="dense", quantum=True,
                description="AngleReuploading (Perez-Salinas et al.): features in groups of three re-uploaded as "
                            "Rot(w * x + b) over max(4, out) qubits, trainable Rot and CZ rings, <Z> with a "
                            "learned scale",
                qubits=AngleReuploading.qubits_for)
def make_angle_reuploading(slot, *, layers=DEFAULT_LAYERS, width=None, dtype=None, device=None):
    return AngleReuploading(slot.in_features, slot.out_features, layers=layers, width=width, dtype=dtype,
                            device=device)


@register_layer("angle_reuploading_twin", slot_kind="dense", quantum=False, twin_of="angle_reuploading",
                description="AngleReuploadingTwin: classical twin of angle_reuploading, the same circuit on "
                            "uncorrelated qubits (Bloch vectors, CZ as dephasing), the same parameters")
def make_angle_reuploading_twin(slot, *, layers=DEFAULT_LAYERS, width=None, dtype=None, device=None):
    return AngleReuploadingTwin(slot.in_features, slot.out_features, layers=layers, width=width, dtype=dtype,
                                device=device)
