r"""End-to-end quantum baseline: the Hamiltonian-embedding re-uploading image classifier.

The paper's headline compares its hybrid with an end-to-end quantum network, the authors' own
classifier (Wang, Myers, Hollenberg, Parampalli, arXiv:2407.14055, "Quantum Hamiltonian Embedding
of Images for Data Reuploading Classifiers"). The whole image is the Hamiltonian:

* a grey image, in ``[0, 1]``, is zero-padded (centred) to ``D x D`` with ``D = 2**n`` (28x28 MNIST
  and FashionMNIST: ``D = 32``, ``n = 5``), giving the matrix ``M``; ``A = (M + M^T) / 2`` is real
  symmetric;
* the register starts in ``|+>^n``; each of ``L`` layers applies the data evolution
  ``exp(-i t_l A / 2)`` with a trainable time ``t_l`` and then a trainable gate
  ``SU(2**n)(theta_l) = exp(i sum_k theta_lk P_k)`` over the ``4**n - 1`` Pauli words:

      |psi> = prod_{l=L..1} [ SU(theta_l) exp(-i t_l A / 2) ] |+>^n;

* the logits are measured probabilities, fed to softmax cross-entropy as they are.

Readouts (``readout=``):
    ``"published"`` (default): the authors' code measures the projectors ``|j><j| (x) I`` on the
    first ``n - 1`` qubits for ``j < K`` (for 5 qubits and 8 classes: ``P(q0 = 0, q1 q2 q3 = j)``,
    with the last qubit traced out). These ``K`` numbers do not sum to 1.
    ``"first_qubits"``: the ``K`` probabilities of the first ``ceil(log2 K)`` qubits (for 8 classes
    the full distribution of qubits 0-2), the simpler reading of the model's description.

Parameters: ``times`` ``(L,)`` and ``theta`` ``(L, 4**n - 1)``, both standard normal at
initialisation as in the published code; ``L * 4**n`` in all (10,240 for MNIST's ``L = 10``,
20,480 for FashionMNIST's ``L = 20``).

The fast path takes one eigendecomposition ``A = V diag(lambda) V^T`` per image (``V`` real;
:meth:`HamEmbeddingClassifier.spectrum`, reusable across epochs since the images do not change) and
applies every data layer as ``V (exp(-i t_l lambda / 2) o (V^T psi))`` in real arithmetic: two
real batched products per layer and one shared ``2D x 2D`` real product for the gate. Its gradient
with respect to ``t_l`` and ``theta`` is exact; an input that requires a gradient (the eigenvectors'
derivative is singular at the repeated eigenvalues a padded image always has) goes through the
reference path, which forms ``exp(-i t_l A / 2)`` and each gate with ``torch.linalg.matrix_exp`` and
dense Pauli matrices, as the published code does.

Inputs are the images qcreep's data pipeline gives, normalised as ``(x - mean) / std`` (mean and std
0.5 for the built-in grey datasets), so the model maps them back to ``[0, 1]`` first.

Example:
    >>> import torch
    >>> model = HamEmbeddingClassifier((1, 12, 12), 8, layers=2)     # 12x12 -> 16x16, 4 qubits
    >>> model.n_qubits, model.num_parameters
    (4, 512)
    >>> model(torch.rand(3, 1, 12, 12) * 2 - 1).shape
    torch.Size([3, 8])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.published import END_TO_END_BASELINES
from qcreep.sim import (
    complex_dtype,
    parallel,
    pauli_matrices,
    plus_state,
    probabilities,
    special_unitary,
    unitarity_error,
)
from qcreep.sim.paulis import MAX_QUBITS

READOUTS = ("published", "first_qubits")

# the authors' protocol (arXiv:2407.14055 and its notebooks), stated once for the benchmark and docs
PUBLISHED_PROTOCOL = {
    "classes": END_TO_END_BASELINES["hamembedding"]["classes"],
    "batch_size": 1000,
    "epochs": 100,
    "lr": 0.01,
    "lr_decay": 0.99,            # multiplied in every `lr_decay_steps` optimiser steps (continuously)
    "lr_decay_steps": 100,
    "clip_value": 1.0,           # each gradient entry clipped to [-1, 1] before Adam
    "layers": END_TO_END_BASELINES["hamembedding"]["layers"],
    "published_accuracy": END_TO_END_BASELINES["hamembedding"]["accuracy"],
}


class HamEmbeddingClassifier(nn.Module):
    """The authors' end-to-end Hamiltonian-embedding re-uploading classifier (see the module docstring).

    Args:
        input_shape: ``(1, H, W)`` of one preprocessed grey image, ``H = W``.
        num_classes: ``K``; at most ``2**(n-1)`` with the published readout, ``2**n`` otherwise.
        layers: ``L``, the number of data-evolution and SU(2**n) layers (10 for MNIST, 20 for
            FashionMNIST in the published runs).
        readout: ``"published"`` or ``"first_qubits"``.
        mean, std: the normalisation of the inputs, undone to recover pixels in ``[0, 1]``.
        path: ``"fast"`` (default) or ``"reference"``.
    """

    qcreep_end_to_end = True

    def __init__(self, input_shape=(1, 32, 32), num_classes: int = 8, layers: int = 10, *,
                 readout: str = "published", mean: float = 0.5, std: float = 0.5, path: str = "fast",
                 dtype=None, device=None):
        super().__init__()
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2]:
            raise QcreepError(f"the Hamiltonian-embedding classifier takes square grey images (1, H, H), got "
                              f"input shape {shape}")
        check_int(num_classes, "HamEmbeddingClassifier num_classes", 2)
        check_int(layers, "HamEmbeddingClassifier layers", 1)
        if readout not in READOUTS:
            raise QcreepError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        if path not in ("fast", "reference"):
            raise QcreepError(f"path must be 'fast' or 'reference', got {path!r}")
        if not float(std) > 0:
            raise QcreepError(f"std must be positive, got {std!r}")
        side = shape[1]
        n = max(1, math.ceil(math.log2(side)))
        if n > MAX_QUBITS:
            raise QcreepError(f"a {side}x{side} image needs {n} qubits; at most {MAX_QUBITS} are simulated")
        capacity = 2 ** (n - 1) if readout == "published" else 2**n
        if num_classes > capacity:
            raise QcreepError(f"{num_classes} classes do not fit the {readout} readout of {n} qubits "
                              f"(at most {capacity}); use fewer classes or readout='first_qubits'")
        self.input_shape = shape
        self.num_classes = int(num_classes)
        self.layers = int(layers)
        self.n_qubits = n
        self.readout = readout
        self.mean, self.std = float(mean), float(std)
        self.path = path
        kw = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        self.times = nn.Parameter(torch.randn(self.layers, **kw))
        self.theta = nn.Parameter(torch.randn(self.layers, 4**n - 1, **kw))

    @property
    def num_parameters(self) -> int:
        return self.times.numel() + self.theta.numel()

    def extra_repr(self) -> str:
        return (f"input_shape={self.input_shape}, num_classes={self.num_classes}, layers={self.layers}, "
                f"n_qubits={self.n_qubits}, readout={self.readout!r}")

    # --- pieces ------------------------------------------------------------------------------

    def hamiltonians(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, D)`` real symmetric ``A = (M + M^T) / 2`` of a batch ``(B, 1, H, H)``."""
        if x.is_complex():
            raise QcreepError("the classifier takes real images; got a complex tensor")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            shape = ", ".join(map(str, self.input_shape))
            raise QcreepError(f"the Hamiltonian-embedding classifier expects input (B, {shape}), got {tuple(x.shape)}")
        pixels = x[:, 0].to(self.theta.dtype) * self.std + self.mean
        dim, side = 2**self.n_qubits, self.input_shape[1]
        if side < dim:
            before = (dim - side) // 2
            pixels = nn.functional.pad(pixels, (before, dim - side - before, before, dim - side - before))
        return (pixels + pixels.transpose(-1, -2)) / 2

    def gates(self) -> torch.Tensor:
        """``(L, D, D)`` complex ``SU(theta_l)``."""
        return special_unitary(self.theta, "eigh")

    def logits(self, probs: torch.Tensor) -> torch.Tensor:
        """The ``K`` readout numbers from the ``(B, D)`` basis-state probabilities."""
        if self.readout == "published":
            marginal = probs.reshape(probs.shape[0], -1, 2).sum(-1)      # the last qubit traced out
            return marginal[:, : self.num_classes]
        q = max(1, math.ceil(math.log2(self.num_classes)))
        marginal = probs.reshape(probs.shape[0], 2**q, -1).sum(-1)      # qubits q..n-1 traced out
        return marginal[:, : self.num_classes]

    def spectrum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lambda, V)`` of every image's ``A`` (real; no gradient): computed once, reusable."""
        with torch.no_grad():
            return parallel.eigh(self.hamiltonians(x))

    def states_from_spectrum(self, lam: torch.Tensor, vecs: torch.Tensor) -> torch.Tensor:
        """``(B, D, 2)`` real and imaginary parts of the final states, from the images' spectra.

        Everything is real arithmetic: a state is ``(re, im)`` as a ``D x 2`` real matrix, a data layer
        is ``V (phase o (V^T psi))``, and the gate ``U = Ur + i Ui`` acts on ``[re | im]`` as the real
        ``2D x 2D`` block matrix ``[[Ur^T, Ui^T], [-Ui^T, Ur^T]]``.
        """
        dim = 2**self.n_qubits
        lam = lam.to(self.theta.dtype)
        vecs = vecs.to(self.theta.dtype)
        gates = self.gates()
        ur, ui = gates.real.transpose(-1, -2), gates.imag.transpose(-1, -2)
        blocks = torch.cat([torch.cat([ur, ui], -1), torch.cat([-ui, ur], -1)], -2)   # (L, 2D, 2D)
        # the first data layer acts on |+>: its coefficients V^T |+> are real
        coeffs = vecs.sum(-2) / math.sqrt(dim)                                       # (B, D)
        vecs_t = vecs.transpose(-1, -2)
        psi = None
        for layer in range(self.layers):
            angle = -0.5 * self.times[layer] * lam
            cos, sin = torch.cos(angle), torch.sin(angle)
            if psi is None:
                rotated = torch.stack([coeffs * cos, coeffs * sin], -1)
            else:
                c = vecs_t @ psi                                                      # (B, D, 2)
                re, im = c[..., 0], c[..., 1]
                rotated = torch.stack([re * cos - im * sin, re * sin + im * cos], -1)
            psi = vecs @ rotated                                                      # (B, D, 2)
            flat = psi.transpose(-1, -2).reshape(psi.shape[0], 2 * dim)              # [re | im]
            psi = (flat @ blocks[layer]).reshape(psi.shape[0], 2, dim).transpose(-1, -2)
        return psi

    def logits_from_spectrum(self, lam: torch.Tensor, vecs: torch.Tensor) -> torch.Tensor:
        """The logits of images given by their spectra (:meth:`spectrum`)."""
        psi = self.states_from_spectrum(lam, vecs)
        return self.logits(psi.square().sum(-1))

    def final_states(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        """``(B, D)`` complex states at the end of the circuit."""
        if (path or self.path) == "reference" or x.requires_grad:
            a = self.hamiltonians(x)
            psi = plus_state(self.n_qubits, (a.shape[0],), dtype=complex_dtype(self.theta.dtype), device=a.device)
            return self._states_reference(a, psi)
        psi = self.states_from_spectrum(*self.spectrum(x))
        return torch.complex(psi[..., 0], psi[..., 1])

    def _states_reference(self, a: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        words = pauli_matrices(self.n_qubits, dtype=psi.dtype, device=psi.device)
        a_c = a.to(psi.dtype)
        for layer in range(self.layers):
            data = torch.linalg.matrix_exp((-0.5j * self.times[layer]).to(psi.dtype) * a_c)
            psi = (data @ psi.unsqueeze(-1)).squeeze(-1)
            generator = torch.einsum("k,kij->ij", self.theta[layer].to(psi.dtype), words)
            psi = psi @ torch.linalg.matrix_exp(1j * generator).transpose(-1, -2)
        return psi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.path == "reference" or x.requires_grad:
            return self.forward_reference(x)
        return self.logits_from_spectrum(*self.spectrum(x))

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The same logits through dense matrix exponentials (slow; for tests)."""
        return self.logits(probabilities(self.final_states(x, path="reference")))

    def physicality(self) -> dict[str, float]:
        """Largest unitarity error of the trainable gates."""
        with torch.no_grad():
            return {"unitarity_error": float(unitarity_error(self.gates()).max())}


def hamembedding(input_shape=(1, 32, 32), num_classes: int = 8, layers: int = 10) -> HamEmbeddingClassifier:
    """The registered model ``hamembedding`` (``qcreep run --model hamembedding``)."""
    return HamEmbeddingClassifier(input_shape, num_classes, layers)


__all__ = ["PUBLISHED_PROTOCOL", "READOUTS", "HamEmbeddingClassifier", "hamembedding"]
