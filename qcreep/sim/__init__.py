"""Batched statevector simulation: Pauli bases, SU(N) exponentials, Hamiltonian embedding, measurement.

Pure functions over tensors. dtype and device come from the inputs. The unitaries ``exp(i t H)``
are computed by one of two solvers, ``"eigh"`` or ``"expm"`` (products only), chosen per call or
by device with ``"auto"`` (:mod:`qcreep.sim.solvers`); on CPU the per-matrix work of a batch runs on
all cores (:mod:`qcreep.sim.parallel`). Every custom autograd function supports ``torch.func.vmap``.
"""

from qcreep.sim.circuits import reupload_circuit, reupload_features, reupload_features_su
from qcreep.sim.paulis import num_generators, pauli_masks, pauli_matrices, pauli_sum, pauli_words
from qcreep.sim.solvers import SOLVERS, check_solver, expi_cos_sin, resolve_solver
from qcreep.sim.states import (
    apply_matrix,
    complex_dtype,
    expval_pauli,
    expval_symmetric,
    hamiltonian_embedding,
    norm_squared,
    plus_state,
    probabilities,
    symmetric_embedding_matrix,
    zero_state,
)
from qcreep.sim.unitary import expi_hermitian, special_unitary, unitarity_error

__all__ = [
    "SOLVERS", "apply_matrix", "check_solver", "complex_dtype", "expi_cos_sin", "expi_hermitian",
    "expval_pauli", "expval_symmetric", "hamiltonian_embedding", "norm_squared", "num_generators",
    "pauli_masks", "pauli_matrices", "pauli_sum", "pauli_words", "plus_state", "probabilities",
    "resolve_solver", "reupload_circuit", "reupload_features", "reupload_features_su", "special_unitary",
    "symmetric_embedding_matrix", "unitarity_error", "zero_state",
]
