r"""An amplitude-embedded variational circuit for dense slots (the circuit-centric classifier), and its twin.

:class:`AmplitudeCircuit` is a drop-in for ``nn.Linear(in, out)`` on ``n = max(1, ceil(log2 in))``
qubits (and ``2^n >= out``):

    |x> = x / |x|  (zero-padded to 2^n amplitudes)           (amplitude embedding)
    U(w) = prod_{l=L..1} C_l R_l,  R_l = Rot(w_l0) x ... x Rot(w_l,n-1)
    p_j = |<j| U(w) |x>|^2,   y_j = s p_j + b_j  (j < out)

``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)``, and ``C_l`` is the ring of CNOTs
``(i, i + r_l mod n)`` for ``i = 0 .. n-1`` in turn, with range ``r_l = (l mod (n - 1)) + 1``:
PennyLane's ``StronglyEntanglingLayers`` (Schuld, Bocharov, Svore, Wiebe, "Circuit-centric quantum
classifiers", arXiv:1804.00633; qml-benchmarks' ``CircuitCentricClassifier``). The readout is the
re-uploading head's: the first ``out`` basis probabilities times a learned scale ``s = exp(a)``
(``a`` starting at ``log 2^n``) plus biases starting at zero. Parameters: ``3 L n + out + 1``.
The 12,544-feature head of HybridNet on MNIST fits at 14 qubits.

The map is ``p_j = |u_j . x|^2 / |x|^2`` with ``u_j`` the ``j``-th row of ``U``: a fixed quadratic
form of the normalised input. The fast path uses exactly that. It never builds ``U``: it pushes the
``out`` basis rows ``<j|`` back through the gates (``<j| U``: per layer one permutation and ``n``
2x2 contractions on an ``out x 2^n`` array), then scores the whole batch with two real matrix
products (real and imaginary parts). Cost ``O(L n out 2^n + B 2^n out)`` instead of
``O(B L n 2^n)`` for simulating each sample.

:class:`AmplitudeTwin` keeps the normalisation, the squared readout and the parameter count: a
fixed Gaussian projection ``G`` (``k x in``, not trained, drawn from the layer's seed) of the
normalised input, then ``out`` trainable directions ``a_j`` in that ``k``-dimensional space, read
out as ``y_j = s cos^2(a_j, G x) + b_j``: a bounded quadratic form of ``x / |x|``, like ``p_j``.
``k = ceil(3 L n / out)``, and where ``out`` does not divide ``3 L n`` the last ``k out - 3 L n``
directions have their last entry fixed at 0, so that the directions hold exactly the circuit's
``3 L n`` angles and the counts are equal (95 for 12544 -> 10). Only with ``3 L n < out`` (many
outputs on few qubits: ``k = 1``, one free entry per direction) has the twin more, ``2 out + 1``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.layers.base import QuantumLayer
from qcreep.layers.registry import register_layer
from qcreep.sim.program import Circuit, Gate

#: Default number of strongly entangling layers.
DEFAULT_LAYERS = 2
#: The most qubits this layer simulates (a state of 2^20 amplitudes per example).
MAX_AMPLITUDE_QUBITS = 20


def amplitude_qubits(in_features: int, out_features: int) -> int:
    """``n = max(1, ceil(log2 in))``, raised until ``2^n >= out``: 14 for 12544 -> 10."""
    n = max(1, math.ceil(math.log2(in_features)))
    while 2**n < out_features:
        n += 1
    return n


def cnot_ring(width: int, layer: int) -> list[tuple[int, int]]:
    """The CNOTs of strongly entangling layer ``layer`` (0-based): ``(i, i + r mod n)``, ``r = layer mod (n-1) + 1``."""
    if width < 2:
        return []
    r = (layer % (width - 1)) + 1
    return [(i, (i + r) % width) for i in range(width)]


def rot_matrix(w: torch.Tensor) -> torch.Tensor:
    """``(..., 2, 2)`` complex ``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)`` for ``w = (..., 3)``."""
    phi, theta, omega = w.unbind(-1)
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    plus, minus = (phi + omega) / 2, (phi - omega) / 2
    # from real and imaginary parts, not torch.polar: cos(theta/2) and sin(theta/2) change sign, and
    # polar's backward treats its first argument as a modulus (>= 0), which gives wrong gradients then
    cp, sp, cm, sm = torch.cos(plus), torch.sin(plus), torch.cos(minus), torch.sin(minus)
    a = torch.complex(c * cp, -c * sp)  # cos(theta/2) e^{-i(phi+omega)/2}
    b = torch.complex(-s * cm, -s * sm)  # -sin(theta/2) e^{i(phi-omega)/2}
    cc = torch.complex(s * cm, -s * sm)  # sin(theta/2) e^{-i(phi-omega)/2}
    d = torch.complex(c * cp, c * sp)  # cos(theta/2) e^{i(phi+omega)/2}
    return torch.stack((torch.stack((a, b), -1), torch.stack((cc, d), -1)), -2)


def _ring_image(width: int, layer: int) -> torch.Tensor:
    """``image`` with ``C |j> = |image[j]>`` for the CNOT ring of ``layer`` (qubit 0 most significant)."""
    index = torch.arange(2**width)
    bits = [(index >> (width - 1 - q)) & 1 for q in range(width)]
    for control, target in cnot_ring(width, layer):
        bits[target] = bits[target] ^ bits[control]
    return sum(b << (width - 1 - q) for q, b in enumerate(bits))


def _cnot_matrix() -> torch.Tensor:
    return torch.eye(4, dtype=torch.complex128)[[0, 1, 3, 2]]


def _normalised(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x / |x|`` zero-padded to ``dim`` entries; an all-zero row stays zero (its output is the bias)."""
    padded = torch.nn.functional.pad(x, (0, dim - x.shape[-1]))
    norm = padded.norm(dim=-1, keepdim=True)
    return padded / norm.clamp_min(torch.finfo(x.dtype).tiny)


class AmplitudeCircuit(QuantumLayer):
    """Amplitude embedding, ``layers`` strongly entangling layers, basis probabilities (module docstring).

    Args:
        in_features, out_features: the sizes of the ``nn.Linear`` it replaces.
        layers: the strongly entangling layers ``L`` (default 2).

    Example:
        >>> import torch
        >>> head = AmplitudeCircuit(12544, 10)
        >>> head.n_qubits, head.num_parameters
        (14, 95)
        >>> AmplitudeCircuit(30, 2)(torch.randn(4, 30)).shape
        torch.Size([4, 2])
    """

    slot_kind = "dense"
    circuit_parameters = ("weights",)

    def __init__(self, in_features: int, out_features: int, *, layers: int = DEFAULT_LAYERS, dtype=None,
                 device=None):
        super().__init__()
        check_int(in_features, "AmplitudeCircuit in_features", 1)
        check_int(out_features, "AmplitudeCircuit out_features", 1)
        check_int(layers, "AmplitudeCircuit layers", 1)
        n = amplitude_qubits(in_features, out_features)
        if n > MAX_AMPLITUDE_QUBITS:
            raise QcreepError(f"AmplitudeCircuit({in_features} -> {out_features}) needs {n} qubits; it simulates at "
                              f"most {MAX_AMPLITUDE_QUBITS}")
        self.in_features, self.out_features, self.n_qubits, self.layers = in_features, out_features, n, layers
        # PennyLane's StronglyEntanglingLayers draws its demo weights uniformly in [0, 2 pi)
        self.weights = nn.Parameter(2 * math.pi * torch.rand(layers, n, 3, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=self.weights.dtype, device=device))
        self.log_scale = nn.Parameter(torch.full((), n * math.log(2.0), dtype=self.weights.dtype, device=device))
        images = torch.stack([_ring_image(n, layer) for layer in range(layers)])
        self.register_buffer("_images", images.to(device), persistent=False)

    @classmethod
    def qubits_for(cls, slot) -> int:
        return amplitude_qubits(slot.in_features, slot.out_features)

    @classmethod
    def scan_slot(cls, n_qubits: int):
        """A two-class slot with ``2**(n-1) + 1`` features, the fewest that need ``n_qubits`` (2 for one qubit)."""
        from qcreep.slots import DenseSlot

        return DenseSlot(2 ** (n_qubits - 1) + 1 if n_qubits > 1 else 2, 2), {}

    @classmethod
    def fits(cls, slot, max_qubits: int | None = None) -> str | None:
        kind = getattr(slot, "kind", None)
        if kind != "dense":
            return f"fills dense slots, not {kind} slots"
        n = cls.qubits_for(slot)
        limit = MAX_AMPLITUDE_QUBITS if max_qubits is None else min(int(max_qubits), MAX_AMPLITUDE_QUBITS)
        return None if n <= limit else f"needs {n} qubits, more than the limit of {limit}"

    def rows(self) -> torch.Tensor:
        """``(out, 2^n)`` complex: the first ``out`` rows ``<j| U(w)`` of the circuit's unitary."""
        n, dim = self.n_qubits, 2**self.n_qubits
        cdtype = torch.complex128 if self.weights.dtype == torch.float64 else torch.complex64
        rows = torch.eye(self.out_features, dim, dtype=cdtype, device=self.weights.device)
        rots = rot_matrix(self.weights)  # (L, n, 2, 2)
        for layer in reversed(range(self.layers)):  # <j| U = <j| C_L R_L ... C_1 R_1
            rows = rows[:, self._images[layer]]  # <j| C: (v C)[k] = v[image[k]]
            for q in range(n):  # <j| R: the 2x2 Rot of qubit q on its axis (qubit 0 most significant)
                v = rows.reshape(self.out_features, 2**q, 2, 2 ** (n - 1 - q))
                rows = torch.einsum("zaib,ij->zajb", v, rots[layer, q]).reshape(self.out_features, dim)
        return rows

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, out)``: ``p_j = |<j| U |x>|^2`` for a flat batch ``(B, in)``, from the real and imaginary parts."""
        state = _normalised(x, 2**self.n_qubits)
        rows = self.rows()
        re, im = state @ rows.real.T, state @ rows.imag.T
        return re * re + im * im

    def readout(self, probs: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * probs + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, lead = self._flatten(x)
        return self.readout(self.probabilities(x)).reshape(*lead, self.out_features)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Each input on its own, gate by gate from the embedded state (:mod:`qcreep.sim.program`; slow).

        An all-zero input has no embedded state: its probabilities are taken as zero, so its output is the
        bias, as on the fast path."""
        x, lead = self._flatten(x)
        zero = [torch.zeros(2**self.n_qubits, dtype=torch.float64)]
        rows = [self.from_measurements(row, [c.measured() for c in self.circuits(row)] if bool(row.any()) else zero)
                for row in x]
        out = torch.stack(rows).to(x.dtype) if rows else x.new_zeros(0, self.out_features)
        return out.reshape(*lead, self.out_features)

    def circuits(self, x: torch.Tensor) -> list[Circuit]:
        """The one circuit for input ``x``: the amplitude-embedded state, then per layer a Rot on every
        qubit and the CNOT ring, measuring the basis probabilities."""
        x = torch.as_tensor(x).detach()
        if x.dim() == 2 and x.shape[0] == 1:
            x = x[0]
        if x.is_complex() or x.dim() != 1 or x.shape[0] != self.in_features:
            raise QcreepError(f"AmplitudeCircuit.circuits takes one real input of {self.in_features} features, "
                              f"got {tuple(x.shape)} {x.dtype}")
        if not bool(x.any()):
            raise QcreepError("AmplitudeCircuit.circuits: an all-zero input has no amplitude embedding (no state "
                              "of norm 1); the layer's output for it is the bias")
        n = self.n_qubits
        state = _normalised(x.to(torch.float64)[None], 2**n)[0].to(torch.complex128)
        w = self.weights.detach().double()
        cnot = _cnot_matrix()
        gates = []
        for layer in range(self.layers):
            gates += [Gate(f"Rot{layer},{i}", (i,), rot_matrix(w[layer, i])) for i in range(n)]
            gates += [Gate("CNOT", pair, cnot) for pair in cnot_ring(n, layer)]
        return [Circuit(n, gates, initial=state, label="AmplitudeCircuit")]

    def from_measurements(self, x: torch.Tensor, values: list) -> torch.Tensor:
        probs = torch.as_tensor(values[0], dtype=torch.float64)[: self.out_features]
        with torch.no_grad():
            return self.log_scale.double().exp() * probs + self.bias.double()

    @torch.no_grad()
    def physicality(self, x: torch.Tensor | None = None) -> dict:
        """How far the rows of ``U`` are from orthonormal, and (given inputs) the norms of the embedded states."""
        rows = self.rows()
        eye = torch.eye(rows.shape[0], dtype=rows.dtype, device=rows.device)
        report = {"max_unitarity_error": float((rows @ rows.conj().T - eye).abs().max())}
        if x is not None:
            flat, _ = self._flatten(x)
            norms = _normalised(flat, 2**self.n_qubits).norm(dim=-1)
            report.update(min_state_norm=float(norms.min()), max_state_norm=float(norms.max()))
        return report

    def _flatten(self, x: torch.Tensor):
        if x.is_complex():
            raise QcreepError("AmplitudeCircuit takes real input; got a complex tensor")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise QcreepError(f"AmplitudeCircuit expects input (*, {self.in_features}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        return (x.to(self.weights.dtype) if x.dtype != self.weights.dtype else x), lead

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, qubits={self.n_qubits}, layers={self.layers}, "
                f"params={self.num_parameters}")


class AmplitudeTwin(nn.Module):
    """The classical twin of :class:`AmplitudeCircuit` (module docstring): ``y_j = s cos^2(a_j, G x) + b_j``.

    ``directions`` holds the ``3 L n`` trainable entries of the ``out x k`` matrix of directions
    (``k = ceil(3 L n / out)``): every row has ``k`` entries except the last ``k out - 3 L n`` rows,
    whose last entry is fixed at 0. With ``3 L n < out`` every row is one free entry (``k = 1``).

    Example:
        >>> AmplitudeTwin(12544, 10).num_parameters, AmplitudeCircuit(12544, 10).num_parameters
        (95, 95)
    """

    def __init__(self, in_features: int, out_features: int, *, layers: int = DEFAULT_LAYERS, dtype=None,
                 device=None):
        super().__init__()
        check_int(in_features, "AmplitudeTwin in_features", 1)
        check_int(out_features, "AmplitudeTwin out_features", 1)
        check_int(layers, "AmplitudeTwin layers", 1)
        n = amplitude_qubits(in_features, out_features)
        self.in_features, self.out_features = in_features, out_features
        gate_params = 3 * layers * n
        self.k = max(1, math.ceil(gate_params / out_features))
        free = torch.ones(out_features, self.k, dtype=torch.bool)
        short = self.k * out_features - gate_params  # rows whose last entry is fixed at 0
        if gate_params >= out_features and short > 0:
            free[out_features - short:, -1] = False
        dtype = dtype or torch.get_default_dtype()
        # fixed, not trained: drawn from the global generator, so the layer's seed fixes it (and it is saved)
        self.register_buffer("projection", torch.randn(self.k, in_features, dtype=dtype, device=device)
                             / math.sqrt(in_features))
        self.register_buffer("_free", free.flatten().nonzero().flatten().to(device), persistent=False)
        self.directions = nn.Parameter(torch.randn(int(free.sum()), dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device))
        self.log_scale = nn.Parameter(torch.full((), n * math.log(2.0), dtype=dtype, device=device))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def direction_matrix(self) -> torch.Tensor:
        """``(out, k)``: the directions ``a_j`` as rows, the fixed entries zero."""
        flat = self.directions.new_zeros(self.out_features * self.k).index_copy(0, self._free, self.directions)
        return flat.reshape(self.out_features, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_complex():
            raise QcreepError("AmplitudeTwin takes real input; got a complex tensor")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise QcreepError(f"AmplitudeTwin expects input (*, {self.in_features}), got {tuple(x.shape)}")
        x = x.to(self.projection.dtype)
        tiny = torch.finfo(x.dtype).tiny
        h = x @ self.projection.T
        h = h / h.norm(dim=-1, keepdim=True).clamp_min(tiny)
        directions = self.direction_matrix()
        a = directions / directions.norm(dim=-1, keepdim=True).clamp_min(tiny)
        cos = h @ a.T
        return self.log_scale.exp() * cos * cos + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, k={self.k}, params={self.num_parameters}"


@register_layer("amplitude_circuit", slot_kind="dense", quantum=True,
                description="AmplitudeCircuit: amplitude embedding on ceil(log2 in) qubits, strongly entangling "
                            "layers, basis probabilities with a learned scale",
                qubits=AmplitudeCircuit.qubits_for)
def make_amplitude_circuit(slot, *, layers=DEFAULT_LAYERS, dtype=None, device=None):
    return AmplitudeCircuit(slot.in_features, slot.out_features, layers=layers, dtype=dtype, device=device)


@register_layer("amplitude_twin", slot_kind="dense", quantum=False, twin_of="amplitude_circuit",
                description="AmplitudeTwin: classical twin of amplitude_circuit, squared cosines of trainable "
                            "directions in a fixed projection of x/|x|, parameter count matched")
def make_amplitude_twin(slot, *, layers=DEFAULT_LAYERS, dtype=None, device=None):
    return AmplitudeTwin(slot.in_features, slot.out_features, layers=layers, dtype=dtype, device=device)
