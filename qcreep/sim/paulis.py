"""The n-qubit Pauli word basis and sums over it.

Convention (the same as PennyLane's ``qml.SpecialUnitary``): the basis is the ``4**n - 1``
non-identity Pauli words in lexicographic order over ``I, X, Y, Z``; the first letter acts on
qubit 0, which is the most significant bit of a computational-basis index. For two qubits the order
is ``IX, IY, IZ, XI, XX, ..., ZZ``.

A Pauli word is stored as two bit masks over basis indices: ``x`` (the qubits carrying X or Y) and
``z`` (the qubits carrying Y or Z). With ``Y = i X Z`` on each qubit,

    P = i**|x & z| * X^x Z^z,      P[j ^ x, j] = i**|x & z| * (-1)**|j & z|,

so a word has exactly one non-zero entry per column. A sum ``G = sum_k theta_k P_k`` therefore
never needs the dense ``4**n`` matrices: for each ``x`` the column entries ``G[j ^ x, j]`` are a
Walsh-Hadamard transform over ``z`` of ``theta[x, z] * i**|x & z|`` (see :func:`pauli_sum`). At
``n = 7`` that is one 128 x 128 x 128 product instead of 16383 dense 128 x 128 matrices.
"""

from __future__ import annotations

import functools
import itertools

import torch

from qcreep.checks import check_int
from qcreep.errors import QcreepError

PAULI_LETTERS = "IXYZ"
# The largest register qcreep simulates: 4**10 - 1 Pauli words per gate, 2**10 amplitudes per state.
# Every module (layers, guard) takes its limit from here.
MAX_QUBITS = 10


def _check_n_qubits(n_qubits: int) -> None:
    check_int(n_qubits, "n_qubits", 1, MAX_QUBITS)


def num_generators(n_qubits: int) -> int:
    """Number of non-identity Pauli words on ``n_qubits`` qubits: ``4**n - 1``."""
    _check_n_qubits(n_qubits)
    return 4**n_qubits - 1


def pauli_words(n_qubits: int) -> list[str]:
    """The basis as strings, e.g. ``['IX', 'IY', 'IZ', 'XI', ...]`` for two qubits.

    Example:
        >>> pauli_words(1)
        ['X', 'Y', 'Z']
        >>> pauli_words(2)[:4], len(pauli_words(2))
        (['IX', 'IY', 'IZ', 'XI'], 15)
    """
    _check_n_qubits(n_qubits)
    words = ("".join(w) for w in itertools.product(PAULI_LETTERS, repeat=n_qubits))
    return [w for w in words if set(w) != {"I"}]


@functools.cache
def _masks(n_qubits: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """x and z masks of all ``4**n`` words (identity first), in basis order."""
    xs, zs = [], []
    for k in range(4**n_qubits):
        x = z = 0
        for q in range(n_qubits):
            letter = (k >> (2 * (n_qubits - 1 - q))) & 3  # base-4 digit of qubit q
            bit = 1 << (n_qubits - 1 - q)
            if letter in (1, 2):
                x |= bit
            if letter in (2, 3):
                z |= bit
        xs.append(x)
        zs.append(z)
    return tuple(xs), tuple(zs)


def pauli_masks(n_qubits: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, z)`` integer masks of the ``4**n - 1`` basis words, each of shape ``(4**n - 1,)``."""
    _check_n_qubits(n_qubits)
    xs, zs = _masks(n_qubits)
    return (torch.tensor(xs[1:], dtype=torch.long, device=device),
            torch.tensor(zs[1:], dtype=torch.long, device=device))


def _popcount(t: torch.Tensor) -> torch.Tensor:
    count = torch.zeros_like(t)
    while bool((t != 0).any()):
        count += t & 1
        t = t >> 1
    return count


@functools.cache
def _tables_cpu(n_qubits: int):
    dim = 2**n_qubits
    xs, zs = _masks(n_qubits)
    xs_t = torch.tensor(xs, dtype=torch.long)
    zs_t = torch.tensor(zs, dtype=torch.long)
    # position of word k in an (x, z) grid; the identity sits at (0, 0)
    grid_pos = xs_t * dim + zs_t
    word_at = torch.empty(dim * dim, dtype=torch.long)
    word_at[grid_pos] = torch.arange(dim * dim)
    a = torch.arange(dim)
    y_count = _popcount(a[:, None] & a[None, :])  # (x, z) -> |x & z|
    hadamard_sign = 1 - 2 * (_popcount(a[:, None] & a[None, :]) % 2)  # (j, z) -> (-1)**|j & z|
    xor_index = a[:, None] ^ a[None, :]  # (row, col) -> row ^ col
    return word_at, y_count % 4, hadamard_sign, xor_index


@functools.lru_cache(maxsize=32)
def _tables(n_qubits: int, device: torch.device, real_dtype: torch.dtype):
    word_at, y_mod4, sign, xor_index = _tables_cpu(n_qubits)
    complex_dtype = _complex_of(real_dtype)
    phases = torch.tensor([1, 1j, -1, -1j], dtype=complex_dtype)[y_mod4]
    return (word_at.to(device), phases.to(device), sign.to(device=device, dtype=complex_dtype),
            xor_index.to(device))


@functools.lru_cache(maxsize=32)
def _dense_table(n_qubits: int, device: torch.device, complex_dtype: torch.dtype) -> torch.Tensor:
    """The words as rows of a ``(4**n - 1, 4**n)`` matrix (flattened ``2**n x 2**n`` matrices)."""
    return pauli_matrices(n_qubits, dtype=complex_dtype, device=device).reshape(4**n_qubits - 1, 4**n_qubits)


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    if dtype in (torch.float64, torch.complex128):
        return torch.complex128
    if dtype in (torch.float32, torch.complex64):
        return torch.complex64
    raise QcreepError(f"unsupported dtype {dtype}; use float32 or float64 (complex64 or complex128)")


def n_qubits_for_generators(length: int) -> int:
    """Invert ``4**n - 1``; a length that is not of that form is an error."""
    n = 1
    while 4**n - 1 < length:
        n += 1
    if 4**n - 1 != length:
        raise QcreepError(
            f"a Pauli coefficient vector has length 4**n - 1 (3, 15, 63, 255, ...), got {length}")
    return n


def pauli_sum(theta: torch.Tensor) -> torch.Tensor:
    """``G = sum_k theta_k P_k`` as a dense ``2**n x 2**n`` complex matrix.

    Example:
        >>> import torch
        >>> pauli_sum(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))   # Z on one qubit
        tensor([[ 1.+0.j,  0.+0.j],
                [ 0.+0.j, -1.+0.j]], dtype=torch.complex128)

    Args:
        theta: ``(..., 4**n - 1)`` coefficients in the basis order of :func:`pauli_words`. Real
            coefficients give a Hermitian ``G``; complex ones (the published code's compatibility
            mode) give a non-Hermitian matrix.

    Returns:
        ``(..., 2**n, 2**n)`` complex tensor (complex64 for float32 input, complex128 for float64).

    For one and two qubits it is one product with the dense ``(4**n - 1) x 4**n`` table of the words
    (the quanvolution's ``C_out x C_in`` generators in one operation); for more, the transform below.
    """
    n = n_qubits_for_generators(theta.shape[-1])
    dim = 2**n
    if n <= 2:
        table = _dense_table(n, theta.device, _complex_of(theta.dtype))
        return (theta.to(table.dtype) @ table).reshape(*theta.shape[:-1], dim, dim)
    word_at, phases, sign, xor_index = _tables(n, theta.device, theta.dtype)
    full = torch.cat([torch.zeros_like(theta[..., :1]), theta], dim=-1)  # identity coefficient 0
    grid = full[..., word_at].reshape(*theta.shape[:-1], dim, dim)  # (..., x, z)
    grid = grid.to(phases.dtype) * phases
    # columns[x, j] = sum_z grid[x, z] * (-1)**|j & z|  =  G[j ^ x, j]
    columns = grid @ sign.transpose(0, 1)
    index = xor_index.expand(*columns.shape)
    return torch.gather(columns, -2, index)


def pauli_matrices(n_qubits: int, dtype=torch.complex128, device=None) -> torch.Tensor:
    """Dense ``(4**n - 1, 2**n, 2**n)`` Pauli word matrices, built by Kronecker products.

    This is the slow, obvious construction, kept for tests and small ``n``.
    """
    _check_n_qubits(n_qubits)
    if n_qubits > 6:
        raise QcreepError(f"dense Pauli matrices are only built for n_qubits <= 6, got {n_qubits}; "
                          "use pauli_sum for larger registers")
    single = {
        "I": torch.tensor([[1, 0], [0, 1]], dtype=dtype, device=device),
        "X": torch.tensor([[0, 1], [1, 0]], dtype=dtype, device=device),
        "Y": torch.tensor([[0, -1j], [1j, 0]], dtype=dtype, device=device),
        "Z": torch.tensor([[1, 0], [0, -1]], dtype=dtype, device=device),
    }
    mats = []
    for word in pauli_words(n_qubits):
        m = single[word[0]]
        for letter in word[1:]:
            m = torch.kron(m, single[letter])
        mats.append(m)
    return torch.stack(mats)
