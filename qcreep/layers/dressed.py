r"""The dressed quantum circuit of Mari et al. (arXiv:1912.08278) for dense slots, and its classical twin.

:class:`DressedCircuit` is a drop-in for ``nn.Linear(in, out)``:

    q = (pi / 2) tanh(W_in x + b_in)                         (classical, in -> n)
    |psi(q)> = prod_i RY(q_i) H |0>                          (H and RY embedding, a product state)
    |phi> = V(w) |psi(q)>,  V(w) = prod_{k=D..1} RY(w_k) E    (E: CNOTs on (0,1), (2,3), ..., then (1,2), (3,4), ...)
    z_i = <phi| Z_i |phi>                                    (i < n)
    y = W_out z + b_out                                      (classical, n -> out)

as in the paper's transfer-learning network and PennyLane's demo of it (``n = 4`` qubits,
``D = 6`` variational layers, angles ``w`` started at ``0.01 N(0, 1)``). Parameters:
``n in + n`` (input map) ``+ D n`` (circuit) ``+ out n + out`` (output map).

The circuit uses only real gates (H, RY, CNOT), so every amplitude is real and the fast path
simulates real vectors. It uses the structure: the embedding is a product state, built for the
whole batch by ``n - 1`` outer products; ``V(w)`` does not depend on the data, so it is built once
per forward as a ``2^n x 2^n`` orthogonal matrix and applied to the batch in one product; and
``z = (phi * phi) S`` with ``S_ji`` the sign of ``Z_i`` on basis state ``j``. So ``z_i`` is a
fixed quadratic form ``psi^T V^T Z_i V psi`` of the encoded vector.

:class:`DressedTwin` keeps both classical maps and replaces the circuit by a classical map with
the same ``D n`` parameters, the same neighbour coupling and the same kind of trainable part (an
orthogonal map, started near the identity):

    z = G(w) sin(q),   G(w) = prod_{k=D..1} prod_{i=n-1..0} R_{i, i+1 mod n}(w_ki)

``R_{i,j}(t)`` the Givens rotation by ``t`` in the ``(i, j)`` plane. ``sin(q)`` is what the
circuit itself gives without its entangling part (``<Z_i>`` of ``RY(q_i) H |0>`` is
``-sin(q_i)``), and ``G(w)`` mixes neighbours along the ring with one angle per qubit and layer, as
the circuit's RY layers and CNOT ladder do. For one qubit (no pair to rotate) each layer shifts the
angle instead, ``z = sin(q + sum_k w_k)``, which is exactly the one-qubit circuit up to sign. Like
``<Z_i>``, ``z`` is a bounded trigonometric function of ``q`` (``||z|| = ||sin q|| <= sqrt(n)``);
unlike it, it has no products of different qubits' terms. ``G`` is orthogonal, so the map neither
contracts nor saturates, as the circuit's state evolution does not; an earlier twin, ``D`` layers
of ``u <- tanh(w_k u + roll(u, 1))``, contracted and stayed at chance on half the digits seeds.
Its difference from the dressed circuit is then what the circuit does beyond the two classical
maps, which is the criticism of dressed circuits (the classical layers may do the work) made
measurable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.layers.base import QuantumLayer
from qcreep.layers.registry import register_layer
from qcreep.sim.program import Circuit, Gate, hadamard

#: The demo's register size and number of variational layers.
DEFAULT_WIDTH = 4
DEFAULT_DEPTH = 6
#: Initial spread of the circuit's angles (PennyLane's demo: q_delta = 0.01).
ANGLE_SPREAD = 0.01
MAX_WIDTH = 12


def _ry_matrix(angle: torch.Tensor) -> torch.Tensor:
    """``(..., 2, 2)`` real RY(angle) = [[cos a/2, -sin a/2], [sin a/2, cos a/2]]."""
    c, s = torch.cos(angle / 2), torch.sin(angle / 2)
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


def cnot_pairs(width: int) -> list[tuple[int, int]]:
    """The entangler's CNOTs (control, target): even pairs first, then odd pairs, as in the demo."""
    return [(i, i + 1) for i in range(0, width - 1, 2)] + [(i, i + 1) for i in range(1, width - 1, 2)]


def _cnot_matrix() -> torch.Tensor:
    return torch.eye(4, dtype=torch.float64)[[0, 1, 3, 2]]


def _entangler_image(width: int) -> torch.Tensor:
    """``image`` with ``E |j> = |image[j]>`` for the CNOT ladder ``E`` (a permutation of the basis states)."""
    index = torch.arange(2**width)
    bits = [(index >> (width - 1 - q)) & 1 for q in range(width)]  # qubit 0 is the most significant bit
    for control, target in cnot_pairs(width):
        bits[target] = bits[target] ^ bits[control]
    return sum(b << (width - 1 - q) for q, b in enumerate(bits))


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _kron_layers(mats: torch.Tensor) -> torch.Tensor:
    """``(D, 2^n, 2^n)``: for each ``k``, the Kronecker product of ``mats[k, 0], ..., mats[k, n-1]`` (each 2x2)."""
    depth, n = mats.shape[:2]
    rows, cols = _LETTERS[:n], _LETTERS[n:2 * n]
    spec = ",".join(f"z{r}{c}" for r, c in zip(rows, cols)) + f"->z{rows}{cols}"
    return torch.einsum(spec, *mats.unbind(1)).reshape(depth, 2**n, 2**n)


def _kron_vectors(vecs: torch.Tensor) -> torch.Tensor:
    """``(B, 2^n)``: for each row, the Kronecker product of ``vecs[b, 0], ..., vecs[b, n-1]`` (each of 2)."""
    batch, n = vecs.shape[:2]
    letters = _LETTERS[:n]
    return torch.einsum(",".join(f"z{c}" for c in letters) + f"->z{letters}", *vecs.unbind(1)).reshape(batch, 2**n)


def _check_sizes(owner: str, in_features, out_features, width, depth) -> None:
    check_int(in_features, f"{owner} in_features", 1)
    check_int(out_features, f"{owner} out_features", 1)
    check_int(width, f"{owner} width (qubits)", 1)
    check_int(depth, f"{owner} depth", 1)
    if width > MAX_WIDTH:
        raise QcreepError(f"{owner} simulates at most {MAX_WIDTH} qubits; width={width} was asked for")


class DressedCircuit(QuantumLayer):
    """Mari et al.'s dressed quantum circuit (see the module docstring): ``(*, in) -> (*, out)``, real.

    Args:
        in_features, out_features: the sizes of the ``nn.Linear`` it replaces.
        width: the qubits ``n`` (default 4).
        depth: the variational layers ``D`` (default 6).

    Example:
        >>> import torch
        >>> layer = DressedCircuit(30, 2)
        >>> layer(torch.randn(5, 30)).shape, layer.num_parameters
        (torch.Size([5, 2]), 158)
    """

    slot_kind = "dense"
    circuit_parameters = ("weights",)

    def __init__(self, in_features: int, out_features: int, *, width: int = DEFAULT_WIDTH, depth: int = DEFAULT_DEPTH,
                 dtype=None, device=None):
        super().__init__()
        _check_sizes("DressedCircuit", in_features, out_features, width, depth)
        self.in_features, self.out_features = in_features, out_features
        self.n_qubits, self.depth = width, depth
        self.pre = nn.Linear(in_features, width, dtype=dtype, device=device)
        self.weights = nn.Parameter(ANGLE_SPREAD * torch.randn(depth, width, dtype=dtype, device=device))
        self.post = nn.Linear(width, out_features, dtype=dtype, device=device)
        self.register_buffer("_image", _entangler_image(width).to(device), persistent=False)
        index = torch.arange(2**width)
        signs = torch.stack([1 - 2 * ((index >> (width - 1 - q)) & 1) for q in range(width)], -1)
        self.register_buffer("_signs", signs.to(dtype=self.weights.dtype, device=device), persistent=False)

    @classmethod
    def qubits_for(cls, slot) -> int:
        """The register size does not depend on the slot: the default width, 4."""
        return DEFAULT_WIDTH

    @classmethod
    def scan_slot(cls, n_qubits: int):
        """An 8 -> 2 slot at width ``n_qubits``: the register size is the ``width`` option."""
        from qcreep.slots import DenseSlot

        return DenseSlot(8, 2), {"width": n_qubits}

    @classmethod
    def fits(cls, slot, max_qubits: int | None = None) -> str | None:
        kind = getattr(slot, "kind", None)
        if kind != "dense":
            return f"fills dense slots, not {kind} slots"
        if max_qubits is not None and DEFAULT_WIDTH > max_qubits:
            return f"needs {DEFAULT_WIDTH} qubits, more than the limit of {max_qubits}"
        return None

    def angles_in(self, x: torch.Tensor) -> torch.Tensor:
        """``q = (pi / 2) tanh(W_in x + b_in)``, the embedding angles, ``(*, n)``."""
        return (math.pi / 2) * torch.tanh(self.pre(x))

    def variational(self) -> torch.Tensor:
        """``V(w)``, the ``(2^n, 2^n)`` real orthogonal matrix of the trainable part (qubit 0 most significant).

        Built in a few tensor operations whatever the depth: the ``D`` rotation layers at once as
        Kronecker products (one einsum), each with the CNOT ladder folded in as a column permutation
        (``R_k E = R_k[:, image]``, ``E`` mapping basis state ``j`` to ``image[j]``), then their product.
        """
        rotations = _ry_matrix(self.weights)  # (D, n, 2, 2)
        layers = _kron_layers(rotations)  # (D, 2^n, 2^n)
        layers = layers[:, :, self._image]
        v = layers[0]
        for k in range(1, self.depth):
            v = layers[k] @ v
        return v

    def embedded(self, q: torch.Tensor) -> torch.Tensor:
        """``(B, 2^n)`` real product states ``prod_i RY(q_i) H |0>`` for angles ``(B, n)``, in one einsum."""
        c, s = torch.cos(q / 2), torch.sin(q / 2)
        amps = torch.stack((c - s, s + c), -1) / math.sqrt(2.0)  # RY(q)|+> on each qubit, (B, n, 2)
        return _kron_vectors(amps)

    def expectations(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n)``: ``<Z_i>`` of the circuit for a flat batch of inputs ``(B, in)``."""
        phi = self.embedded(self.angles_in(x)) @ self.variational().T
        return (phi * phi) @ self._signs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, lead = self._flatten(x)
        return self.post(self.expectations(x)).reshape(*lead, self.out_features)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Each input on its own, gate by gate, with the plain simulator of :mod:`qcreep.sim.program` (slow)."""
        x, lead = self._flatten(x)
        rows = [self.from_measurements(row, [c.measured() for c in self.circuits(row)]) for row in x]
        out = torch.stack(rows).to(x.dtype) if rows else x.new_zeros(0, self.out_features)
        return out.reshape(*lead, self.out_features)

    def circuits(self, x: torch.Tensor) -> list[Circuit]:
        """For one input: ``n`` circuits, H then RY(q_i) on every qubit, then ``D`` times the CNOT ladder
        and RY(w_k), circuit ``i`` measuring ``Z_i`` (the classical input map is evaluated here)."""
        x = torch.as_tensor(x).detach()
        if x.dim() == 2 and x.shape[0] == 1:
            x = x[0]
        if x.is_complex() or x.dim() != 1 or x.shape[0] != self.in_features:
            raise QcreepError(f"DressedCircuit.circuits takes one real input of {self.in_features} features, "
                              f"got {tuple(x.shape)} {x.dtype}")
        with torch.no_grad():
            q = self.angles_in(x.to(self.weights.dtype)).double()
            w = self.weights.detach().double()
        n = self.n_qubits
        gates = [Gate("H", (i,), hadamard()) for i in range(n)]
        gates += [Gate(f"RY(q{i})", (i,), _ry_matrix(q[i]).to(torch.complex128)) for i in range(n)]
        cnot = _cnot_matrix().to(torch.complex128)
        for k in range(self.depth):
            gates += [Gate("CNOT", pair, cnot) for pair in cnot_pairs(n)]
            gates += [Gate(f"RY(w{k},{i})", (i,), _ry_matrix(w[k, i]).to(torch.complex128)) for i in range(n)]
        z = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.complex128)
        out = []
        for i in range(n):
            observable = torch.ones(1, 1, dtype=torch.complex128)
            for j in range(n):
                observable = torch.kron(observable, z if j == i else torch.eye(2, dtype=torch.complex128))
            out.append(Circuit(n, gates, observable=observable, label="DressedCircuit", metadata={"measures": f"Z{i}"}))
        return out

    def ansatz(self, x: torch.Tensor):
        """``(D n, state_fn)``: the state ``V(w) |psi(q)>`` of :meth:`circuits` for the one input ``x``
        (its embedding angles fixed) as a function of the circuit angles ``w``, batched: ``B D`` rotation
        layers as Kronecker products in one einsum, the CNOT ladder as a column permutation, in float64,
        returned as complex128 states (every amplitude is real)."""
        circuit = self.circuits(x)[0]  # checks x
        n, depth = self.n_qubits, self.depth
        start = Circuit(n, circuit.gates[:2 * n]).statevector().real  # H and RY(q) on |0...0>

        def state_fn(values: torch.Tensor) -> torch.Tensor:
            batch = values.shape[0]
            w = values.to(torch.float64).reshape(batch * depth, n)
            layers = _kron_layers(_ry_matrix(w))[:, :, self._image.cpu()].reshape(batch, depth, 2**n, 2**n)
            psi = start.expand(batch, 2**n)
            for k in range(depth):
                psi = torch.einsum("bij,bj->bi", layers[:, k], psi)
            return psi.to(torch.complex128)

        return depth * n, state_fn

    def from_measurements(self, x: torch.Tensor, values: list) -> torch.Tensor:
        """``(out,)``: the output map applied to the measured ``<Z_i>``."""
        z = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values])
        with torch.no_grad():
            return self.post.weight.double() @ z + self.post.bias.double()

    @torch.no_grad()
    def physicality(self, x: torch.Tensor | None = None) -> dict:
        """``|V^T V - I|`` of the variational part, and (given inputs) the norms of the final states."""
        v = self.variational()
        report = {"max_unitarity_error": float((v.T @ v - torch.eye(v.shape[0], dtype=v.dtype)).abs().max())}
        if x is not None:
            flat, _ = self._flatten(x)
            norms = (self.embedded(self.angles_in(flat)) @ v.T).norm(dim=-1)
            report.update(min_state_norm=float(norms.min()), max_state_norm=float(norms.max()))
        return report

    def _flatten(self, x: torch.Tensor):
        if x.is_complex():
            raise QcreepError("DressedCircuit takes real input; got a complex tensor")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise QcreepError(f"DressedCircuit expects input (*, {self.in_features}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        return (x.to(self.weights.dtype) if x.dtype != self.weights.dtype else x), lead

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, width={self.n_qubits}, depth={self.depth}, "
                f"params={self.num_parameters}")


class DressedTwin(nn.Module):
    """The classical twin of :class:`DressedCircuit`: the same two classical maps around the orthogonal
    map ``z = G(w) sin(q)`` of ``D`` layers of Givens rotations, with exactly the circuit's ``D n``
    parameters (module docstring).

    Example:
        >>> twin = DressedTwin(30, 2)
        >>> twin.num_parameters == DressedCircuit(30, 2).num_parameters
        True
    """

    def __init__(self, in_features: int, out_features: int, *, width: int = DEFAULT_WIDTH, depth: int = DEFAULT_DEPTH,
                 dtype=None, device=None):
        super().__init__()
        _check_sizes("DressedTwin", in_features, out_features, width, depth)
        self.in_features, self.out_features, self.width, self.depth = in_features, out_features, width, depth
        self.pre = nn.Linear(in_features, width, dtype=dtype, device=device)
        # started as the circuit's angles are, so that G starts near the identity
        self.weights = nn.Parameter(ANGLE_SPREAD * torch.randn(depth, width, dtype=dtype, device=device))
        self.post = nn.Linear(width, out_features, dtype=dtype, device=device)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def mixing(self) -> torch.Tensor:
        """``(n, n)``: the orthogonal ``G(w)``, rotation ``(i, i + 1 mod n)`` of layer ``k`` by ``w_ki``, in order."""
        n = self.width
        rows = list(torch.eye(n, dtype=self.weights.dtype, device=self.weights.device).unbind(0))
        cos, sin = torch.cos(self.weights), torch.sin(self.weights)
        for k in range(self.depth):
            for i in range(n):
                j = (i + 1) % n
                c, s = cos[k, i], sin[k, i]
                rows[i], rows[j] = c * rows[i] - s * rows[j], s * rows[i] + c * rows[j]
        return torch.stack(rows)

    def middle(self, q: torch.Tensor) -> torch.Tensor:
        """``z`` for the encoded angles ``q`` ``(*, n)``: ``G(w) sin(q)``, or ``sin(q + sum w)`` for one qubit."""
        if self.width == 1:
            return torch.sin(q + self.weights.sum(0))
        return torch.sin(q) @ self.mixing().T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_complex():
            raise QcreepError("DressedTwin takes real input; got a complex tensor")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise QcreepError(f"DressedTwin expects input (*, {self.in_features}), got {tuple(x.shape)}")
        q = (math.pi / 2) * torch.tanh(self.pre(x.to(self.weights.dtype)))
        return self.post(self.middle(q))

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, width={self.width}, depth={self.depth}, "
                f"params={self.num_parameters}")


@register_layer("dressed_circuit", slot_kind="dense", quantum=True,
                description="DressedCircuit (Mari et al.): Linear -> tanh pi/2 -> H, RY embedding -> depth x "
                            "(CNOTs, RY) -> <Z> -> Linear",
                qubits=DressedCircuit.qubits_for)
def make_dressed_circuit(slot, *, width=DEFAULT_WIDTH, depth=DEFAULT_DEPTH, dtype=None, device=None):
    return DressedCircuit(slot.in_features, slot.out_features, width=width, depth=depth, dtype=dtype, device=device)


@register_layer("dressed_twin", slot_kind="dense", quantum=False, twin_of="dressed_circuit",
                description="DressedTwin: classical twin of dressed_circuit, the same two Linear maps around "
                            "depth layers of Givens rotations of sin(q), parameter count equal")
def make_dressed_twin(slot, *, width=DEFAULT_WIDTH, depth=DEFAULT_DEPTH, dtype=None, device=None):
    return DressedTwin(slot.in_features, slot.out_features, width=width, depth=depth, dtype=dtype, device=device)
