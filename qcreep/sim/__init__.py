"""Batched statevector simulation: Pauli bases, SU(N) exponentials, Hamiltonian embedding, measurement.

Pure functions over tensors. dtype and device come from the inputs; nothing is global.
"""

from qcreep.sim.circuits import reupload_circuit
from qcreep.sim.paulis import num_generators, pauli_masks, pauli_matrices, pauli_sum, pauli_words
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
    "apply_matrix", "complex_dtype", "expi_hermitian", "expval_pauli", "expval_symmetric",
    "hamiltonian_embedding", "norm_squared", "num_generators", "pauli_masks", "pauli_matrices",
    "pauli_sum", "pauli_words", "plus_state", "probabilities", "reupload_circuit", "special_unitary",
    "symmetric_embedding_matrix", "unitarity_error", "zero_state",
]
