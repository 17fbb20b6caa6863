r"""Diagnostics of parameterised models: effective dimension, gradient variance, expressibility, entanglement.

Pure functions over torch tensors and modules; none of them changes the model it is given. Every
random draw comes from an explicit ``torch.Generator`` (or an ``int`` seed turned into one, ``None``
meaning seed 0), so the same seed gives the same numbers.

Effective dimension (Abbas et al., "The power of quantum neural networks", Nat. Comput. Sci. 1,
403 (2021)), computed as qiskit-machine-learning's ``EffectiveDimension`` does. For a classifier
with class probabilities ``p_k(x; theta) = softmax(model(x))_k``, ``N`` inputs and ``M`` weight
samples ``theta_m``:

    F(theta) = (1/N) sum_x sum_k p_k grad log p_k grad log p_k^T         (Fisher over the outputs)
    F_hat(theta) = d F(theta) / mean_m tr F(theta_m)                     (trace normalisation)
    kappa = gamma n / (2 pi log n),  gamma = 1
    d_eff(n) = 2 log( mean_m sqrt(det(I_d + kappa F_hat(theta_m))) ) / log(kappa)

The mean of the square roots is taken in log space (``logsumexp``). With ``J`` the ``(N K) x d``
matrix of the rows ``sqrt(p_k(x)) grad log p_k(x)``, ``F = J^T J / N`` and ``tr F = |J|_F^2 / N``,
and by Sylvester's identity ``det(I_d + c J^T J) = det(I_NK + c J J^T)``: the log-determinant is
``sum_i log(1 + c lambda_i)`` over the eigenvalues of the smaller Gram matrix (``J J^T`` when
``N K <= d``, else ``J^T J``; their non-zero eigenvalues are the same), found once per weight
sample in float64 and reused for every ``n``. ``d x d`` is never formed when ``d > N K``; the cost
is ``O(M N K d min(N K, d))`` instead of ``O(M N d^3)``.

Gradient variance (barren plateaus; McClean et al., Nat. Commun. 9, 4812 (2018); Cerezo et al.,
Nat. Commun. 12, 1791 (2021)): the variance of each gradient entry over random initialisations,
accumulated in float64 by Welford's update, with the sample variance (``n_inits - 1``) in the
denominator. :func:`fit_decay` fits ``log Var = a - b n`` over qubit counts ``n``.

Expressibility (Sim, Johnson, Aspuru-Guzik, Adv. Quantum Technol. 2, 1900070 (2019)):
``KL(P_PQC(F) || P_Haar(F))`` for the fidelities ``F = |<psi(theta)|psi(phi)>|^2`` of pairs of
uniform parameters, both distributions histogrammed in ``bins`` equal bins on ``[0, 1]``, with
``P_Haar(F) = (D - 1)(1 - F)^(D - 2)`` for the Hilbert space dimension ``D``.

Entangling capability (same paper): the mean Meyer-Wallach measure
``Q = 2 (1 - (1/n) sum_k tr rho_k^2)`` over uniform parameters (Meyer and Wallach, J. Math. Phys. 43,
4273 (2002); this form is Brennen's, Quantum Inf. Comput. 3, 619 (2003)).

States are complex tensors ``(B, 2**n)`` with qubit 0 the most significant bit of the basis index
(as in :mod:`qcreep.sim.states`); ``Q`` does not depend on the ordering.

Example:
    >>> import math, torch
    >>> from qcreep.diagnostics import expressibility, meyer_wallach
    >>> bell = torch.tensor([[1, 0, 0, 1]], dtype=torch.complex128) / math.sqrt(2)
    >>> round(float(meyer_wallach(bell)[0]), 12)
    1.0
    >>> idle = lambda params: torch.ones(params.shape[0], 1, dtype=torch.complex128) * torch.tensor([1, 0])
    >>> round(expressibility(idle, 0), 4) == round(math.log(75), 4)   # every F = 1: -log P_Haar(last bin)
    True
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
from scipy import stats as _sp
from torch import nn
from torch.func import functional_call, jacrev, vmap

from qcreep.errors import ConfigError, QcreepError

__all__ = [
    "DecayFit", "GradientVariance", "effective_dimension", "entangling_capability", "expressibility",
    "fit_decay", "gradient_variance", "haar_fidelity_distribution", "meyer_wallach",
]

#: Jacobian routes of :func:`effective_dimension`.
JACOBIAN_METHODS = ("auto", "vmap", "loop")


# --------------------------------------------------------------------------------------------------
# shared helpers


def _generator(generator) -> torch.Generator:
    """A ``torch.Generator`` from a generator, an ``int`` seed (>= 0) or ``None`` (seed 0)."""
    if generator is None:
        return torch.Generator().manual_seed(0)
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool) and generator >= 0:
        return torch.Generator().manual_seed(generator)
    raise ConfigError(f"generator must be a torch.Generator, a seed (int >= 0) or None, got {generator!r}")


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------------
# effective dimension


def _kappa(n: float) -> float:
    return n / (2.0 * math.pi * math.log(n))


def _dataset_sizes(dataset_size) -> tuple[list[float], bool]:
    """The sizes as floats and whether a single number was given."""
    single = _is_number(dataset_size)
    if single:
        sizes = [dataset_size]
    elif isinstance(dataset_size, (list, tuple)) and dataset_size and all(_is_number(v) for v in dataset_size):
        sizes = list(dataset_size)
    else:
        raise ConfigError(f"dataset_size must be a number or a non-empty list of numbers, got {dataset_size!r}")
    out = []
    for n in sizes:
        n = float(n)
        if not (math.isfinite(n) and n > 1 and _kappa(n) > 1):
            raise ConfigError(f"dataset_size {n!r} is invalid: n / (2 pi log n) must exceed 1 for the effective "
                              f"dimension to be defined (true for every integer n >= 19)")
        out.append(n)
    return out, single


def _parameter_layout(model) -> tuple[list[str], list[torch.Size], dict[str, torch.Tensor]]:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = list(model.named_parameters())
    if not named:
        raise ConfigError("model has no parameters; the effective dimension needs at least one")
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    # clones, so that a module updating a buffer in its forward pass (batch norm in train mode) leaves the
    # caller's model untouched
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    return names, shapes, buffers


def _unflatten(theta: torch.Tensor, names, shapes) -> dict[str, torch.Tensor]:
    sizes = [math.prod(s) for s in shapes]
    return {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes)}


def _check_logits(out, batch: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != batch:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise QcreepError(f"the model must return logits of shape (batch, classes) = ({batch}, K), got {shape}")
    return out


def _jacobian_vmap(model, names, shapes, buffers, theta, x) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p (B, K), d log p / d theta (B, K, d))`` by ``vmap`` over the inputs of ``jacrev``."""

    def single(t, xi):
        out = _check_logits(functional_call(model, (_unflatten(t, names, shapes), buffers), (xi.unsqueeze(0),)), 1)
        logp = torch.log_softmax(out, dim=-1).squeeze(0)
        return logp, logp

    jac, logp = vmap(jacrev(single, has_aux=True), in_dims=(None, 0))(theta, x)
    return logp, jac


def _jacobian_loop(model, names, shapes, buffers, theta, x) -> tuple[torch.Tensor, torch.Tensor]:
    """The same, one input at a time (as ``vmap`` sees them): a forward pass of the input alone and one
    backward pass per class, for models that ``vmap`` cannot run."""
    t = theta.detach().requires_grad_(True)
    rows, logps = [], []
    with torch.enable_grad():
        for i in range(x.shape[0]):
            out = _check_logits(functional_call(model, (_unflatten(t, names, shapes), buffers), (x[i:i + 1],)), 1)
            logp = torch.log_softmax(out, dim=-1)[0]
            jac = theta.new_zeros(logp.shape[0], theta.numel())
            for j in range(logp.shape[0]):
                (g,) = torch.autograd.grad(logp[j], t, retain_graph=j + 1 < logp.shape[0], allow_unused=True)
                if g is not None:
                    jac[j] = g
            rows.append(jac)
            logps.append(logp.detach())
    return torch.stack(logps), torch.stack(rows)


def _fisher_rows(model, inputs, weights, chunk, method):
    """Yield, per weight sample, the ``(N K, d)`` matrix ``J`` of rows ``sqrt(p_k) grad log p_k`` (float64)."""
    names, shapes, buffers = _parameter_layout(model)
    routes = {"vmap": _jacobian_vmap, "loop": _jacobian_loop}
    state = {"method": method}
    for theta in weights:
        rows = []
        for start in range(0, inputs.shape[0], chunk):
            x = inputs[start:start + chunk]
            if state["method"] == "auto":
                try:
                    logp, jac = _jacobian_vmap(model, names, shapes, buffers, theta, x)
                    state["method"] = "vmap"
                except (RuntimeError, NotImplementedError):
                    state["method"] = "loop"
                    logp, jac = _jacobian_loop(model, names, shapes, buffers, theta, x)
            else:
                logp, jac = routes[state["method"]](model, names, shapes, buffers, theta, x)
            logp = logp.detach().to(torch.float64)
            rows.append((torch.exp(0.5 * logp).unsqueeze(-1) * jac.detach().to(torch.float64)).flatten(0, 1))
        yield torch.cat(rows)


def _check_ed_inputs(model, inputs, weights, generator, chunk, method):
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    d = sum(p.numel() for p in model.parameters())
    if d == 0:
        raise ConfigError("model has no parameters; the effective dimension needs at least one")
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ConfigError("inputs must be a tensor (N, ...) holding at least one input")
    if method not in JACOBIAN_METHODS:
        raise ConfigError(f"method must be one of {', '.join(JACOBIAN_METHODS)}, got {method!r}")
    _positive_int(chunk, "chunk")
    dtype = next(model.parameters()).dtype
    if isinstance(weights, int) and not isinstance(weights, bool):
        _positive_int(weights, "weights (a number of weight samples)")
        weights = torch.rand(weights, d, generator=_generator(generator), dtype=torch.float64)
    if not isinstance(weights, torch.Tensor) or weights.ndim != 2 or weights.shape[1] != d:
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else repr(weights)
        raise ConfigError(f"weights must be a tensor (M, {d}) of parameter vectors in the order of "
                          f"parameters_to_vector(model.parameters()), or a number of samples; got {shape}")
    if weights.shape[0] < 1 or not torch.isfinite(weights).all():
        raise ConfigError("weights must hold at least one parameter vector, all entries finite")
    device = next(model.parameters()).device
    return d, weights.detach().to(dtype=dtype, device=device)


def _finish(logdets_half: torch.Tensor, sizes: list[float], single: bool):
    """``2 (logsumexp(logdet / 2) - log M) / log kappa`` for each size; ``logdets_half`` is ``(S, M)``."""
    m = logdets_half.shape[1]
    out = [float(2.0 * (torch.logsumexp(row, 0) - math.log(m)) / math.log(_kappa(n)))
           for row, n in zip(logdets_half, sizes)]
    return out[0] if single else out


def effective_dimension(model, inputs, dataset_size, weights, *, generator=None, chunk: int = 32,
                        method: str = "auto"):
    r"""Global effective dimension of a classifier (Abbas et al. 2021), as qiskit-machine-learning computes it.

    Args:
        model: an ``nn.Module`` whose class probabilities are ``softmax(model(x))``: it returns logits
            ``(B, K)`` for inputs ``(B, ...)`` and treats the inputs of a batch independently. It is
            run as it is (call ``model.eval()`` first if it has dropout or batch norm) with
            :func:`torch.func.functional_call`; its parameters and buffers are not changed.
        inputs: ``(N, ...)`` tensor of input samples ``x``.
        dataset_size: ``n``, a number or a list of numbers; each must give ``kappa = n / (2 pi log n) > 1``.
        weights: ``(M, d)`` tensor of parameter vectors ``theta_m``, in the order of
            ``torch.nn.utils.parameters_to_vector(model.parameters())``; or an ``int`` ``M`` to draw
            ``M`` vectors uniform in ``[0, 1)`` from ``generator``, as qiskit-machine-learning does.
        generator: ``torch.Generator``, seed or ``None`` (seed 0); only used when ``weights`` is an int.
        chunk: inputs per Jacobian call (bounds the memory: ``chunk * K * d`` numbers and the
            activations of ``chunk`` inputs).
        method: ``"vmap"`` (``torch.func.vmap`` over ``jacrev``), ``"loop"`` (one backward pass per
            row ``(x, k)``) or ``"auto"``: vmap, falling back to the loop when the model cannot be vmapped.

    Returns:
        ``d_eff(n)`` as a float for a number, a list of floats for a list.

    With ``J_m`` the ``(N K) x d`` matrix of rows ``sqrt(p_k(x; theta_m)) grad_theta log p_k(x; theta_m)``,
    ``F(theta_m) = J_m^T J_m / N``, ``T = mean_m tr F(theta_m) = mean_m |J_m|_F^2 / N`` and
    ``det(I + kappa F_hat(theta_m)) = prod_i (1 + c lambda_i)`` with ``c = kappa d / (T N)`` and
    ``lambda_i`` the eigenvalues of the Gram matrix ``J_m J_m^T`` (or of ``J_m^T J_m`` when that is the
    smaller one), computed in float64. Then

        d_eff(n) = 2 (logsumexp_m(log det_m / 2) - log M) / log(kappa).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0) is not None
        True
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        >>> x = torch.randn(10, 3, dtype=torch.float64)
        >>> w = torch.rand(5, 26, dtype=torch.float64)
        >>> d100, d10k = effective_dimension(net, x, [100, 10_000], w)
        >>> 0 < d10k < 26 and abs(effective_dimension(net, x, 100, w) - d100) < 1e-12
        True
    """
    d, weights = _check_ed_inputs(model, inputs, weights, generator, chunk, method)
    sizes, single = _dataset_sizes(dataset_size)
    n_inputs = inputs.shape[0]
    eigs, traces = [], []
    for jac in _fisher_rows(model, inputs, weights, chunk, method):
        gram = jac @ jac.T if jac.shape[0] <= jac.shape[1] else jac.T @ jac
        eigs.append(torch.linalg.eigvalsh(gram).clamp_min(0.0))
        traces.append(float(jac.square().sum()) / n_inputs)
    mean_trace = sum(traces) / len(traces)
    if not mean_trace > 0:
        raise QcreepError("the Fisher information is zero at every weight sample (the class probabilities do not "
                          "depend on the parameters): the effective dimension is undefined")
    eig = torch.stack(eigs)                                            # (M, min(NK, d))
    c = torch.tensor([_kappa(n) * d / (mean_trace * n_inputs) for n in sizes], dtype=torch.float64)
    logdets = torch.log1p(c[:, None, None] * eig[None]).sum(-1)        # (S, M)
    return _finish(0.5 * logdets, sizes, single)


def _effective_dimension_dense(model, inputs, dataset_size, weights, *, generator=None, chunk: int = 32,
                               method: str = "auto"):
    """:func:`effective_dimension` by the ``d x d`` route of qiskit-machine-learning (tests and benchmarks).

    Per weight sample and input the Fisher matrix ``sum_k g_k g_k^T`` (``g_k = sqrt(p_k) grad log p_k``),
    its mean over the inputs, the trace of the mean over all, ``F_hat = d F / T`` and
    ``slogdet(I_d + kappa F_hat)``, all in float64: ``O(M (N K d^2 + d^3))`` work, ``d^2`` memory.
    """
    d, weights = _check_ed_inputs(model, inputs, weights, generator, chunk, method)
    sizes, single = _dataset_sizes(dataset_size)
    n_inputs = inputs.shape[0]
    fishers = []
    for jac in _fisher_rows(model, inputs, weights, chunk, method):
        g = jac.view(n_inputs, -1, d)                                  # (N, K, d)
        fishers.append(torch.einsum("nki,nkj->ij", g, g) / n_inputs)  # mean over x of sum_k g g^T
    fisher = torch.stack(fishers)                                      # (M, d, d)
    trace = torch.diagonal(fisher.mean(0)).sum()
    if not trace > 0:
        raise QcreepError("the Fisher information is zero at every weight sample (the class probabilities do not "
                          "depend on the parameters): the effective dimension is undefined")
    normalised = d * fisher / trace
    eye = torch.eye(d, dtype=torch.float64)
    logdets = torch.stack([torch.linalg.slogdet(eye + _kappa(n) * normalised)[1] for n in sizes])
    return _finish(0.5 * logdets, sizes, single)


# --------------------------------------------------------------------------------------------------
# gradient variance


@dataclass(frozen=True)
class GradientVariance:
    """Variance of the loss gradient over random initialisations.

    ``elementwise[name]``: the sample variance (``n_inits - 1`` in the denominator) of every entry of
    parameter ``name``, a float64 tensor of its shape; ``per_parameter[name]``: its mean over the
    entries; ``per_layer[prefix]``: the mean over every entry of the parameters whose name starts with
    the top-level module ``prefix`` (the part before the first dot); ``mean``: the mean over all
    entries of all parameters.
    """

    n_inits: int
    elementwise: dict[str, torch.Tensor]
    per_parameter: dict[str, float]
    per_layer: dict[str, float]
    mean: float


def _build(model_factory, gen: torch.Generator):
    """Call ``model_factory(gen)``, or a zero-argument ``model_factory()`` under a seed drawn from ``gen``."""
    try:
        params = inspect.signature(model_factory).parameters.values()
        takes_argument = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)
    except (TypeError, ValueError):
        takes_argument = True
    if takes_argument:
        return model_factory(gen)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    with torch.random.fork_rng(devices=[]):  # the caller's global random state is left as it was
        torch.manual_seed(seed)
        return model_factory()


def gradient_variance(model_factory: Callable, inputs, n_inits: int, *, targets=None, loss: Callable | None = None,
                      generator=None) -> GradientVariance:
    r"""Variance of the loss gradient over ``n_inits`` fresh initialisations of a model.

    Args:
        model_factory: returns a freshly initialised ``nn.Module``. Either it takes one argument, the
            ``torch.Generator``, and draws its initial parameters from it; or it takes none and draws
            from torch's global generator, which is then seeded from ``generator`` before each call
            (inside :func:`torch.random.fork_rng`, so the caller's global state is unchanged).
        inputs: passed to the model (default loss) or to ``loss``.
        n_inits: number of initialisations, at least 2.
        targets: class indices for the default loss, ``cross_entropy(model(inputs), targets)``.
        loss: instead of ``targets``, a callable ``loss(model, inputs)`` returning a scalar tensor.
        generator: ``torch.Generator``, seed or ``None`` (seed 0).

    Every parameter with ``requires_grad`` counts; one that the loss does not reach has gradient 0.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> def factory(g):
        ...     net = nn.Linear(2, 1, bias=False)
        ...     nn.init.uniform_(net.weight, -1.0, 1.0, generator=g)
        ...     return net
        >>> x = torch.tensor([[1.0, 2.0]])
        >>> res = gradient_variance(factory, x, 50, loss=lambda m, x: m(x).square().sum())
        >>> res.per_parameter.keys(), res.per_layer.keys()       # d/dw (w.x)^2 = 2 (w.x) x
        (dict_keys(['weight']), dict_keys(['weight']))
        >>> res.elementwise["weight"][0, 1] > res.elementwise["weight"][0, 0] > 0
        tensor(True)
    """
    n_inits = _positive_int(n_inits, "n_inits", 2)
    if (targets is None) == (loss is None):
        raise ConfigError("give exactly one of targets (for the default cross-entropy loss) and loss(model, inputs)")
    if loss is not None and not callable(loss):
        raise ConfigError(f"loss must be a callable loss(model, inputs) returning a scalar, got {loss!r}")
    if not callable(model_factory):
        raise ConfigError(f"model_factory must be a callable returning a fresh nn.Module, got {model_factory!r}")
    gen = _generator(generator)
    names: list[str] | None = None
    mean: list[torch.Tensor] = []
    m2: list[torch.Tensor] = []
    for i in range(1, n_inits + 1):
        model = _build(model_factory, gen)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model_factory must return an nn.Module, got {type(model).__name__}")
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ConfigError("the model from model_factory has no trainable parameters")
        if names is None:
            names = [n for n, _ in named]
            shapes = [p.shape for _, p in named]
            mean = [torch.zeros(s, dtype=torch.float64) for s in shapes]
            m2 = [torch.zeros(s, dtype=torch.float64) for s in shapes]
        elif [n for n, _ in named] != names or [p.shape for _, p in named] != shapes:
            raise ConfigError("model_factory must return models with the same parameter names and shapes every time")
        with torch.enable_grad():
            value = loss(model, inputs) if loss is not None else nn.functional.cross_entropy(model(inputs), targets)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise ConfigError(f"the loss must be a scalar tensor, got {type(value).__name__} "
                                  f"{tuple(getattr(value, 'shape', ()))}")
            grads = torch.autograd.grad(value.reshape(()), [p for _, p in named], allow_unused=True)
        for j, (g, (_, p)) in enumerate(zip(grads, named)):
            g = torch.zeros(p.shape, dtype=torch.float64) if g is None else g.detach().to("cpu", torch.float64)
            delta = g - mean[j]                     # Welford's update
            mean[j] += delta / i
            m2[j] += delta * (g - mean[j])
    assert names is not None
    variances = {n: v / (n_inits - 1) for n, v in zip(names, m2)}
    per_layer_sum: dict[str, float] = {}
    per_layer_count: dict[str, int] = {}
    for n, v in variances.items():
        layer = n.split(".", 1)[0]
        per_layer_sum[layer] = per_layer_sum.get(layer, 0.0) + float(v.sum())
        per_layer_count[layer] = per_layer_count.get(layer, 0) + v.numel()
    total = sum(per_layer_count.values())
    return GradientVariance(
        n_inits=n_inits,
        elementwise=variances,
        per_parameter={n: float(v.mean()) for n, v in variances.items()},
        per_layer={k: per_layer_sum[k] / per_layer_count[k] for k in per_layer_sum},
        mean=sum(per_layer_sum.values()) / total,
    )


@dataclass(frozen=True)
class DecayFit:
    """Least-squares fit ``log Var = intercept - rate * n``; ``[low, high]``: the t interval of ``rate``."""

    rate: float
    low: float
    high: float
    intercept: float
    confidence: float
    n_points: int


def fit_decay(qubits: Sequence, variances: Sequence, *, confidence: float = 0.95) -> DecayFit:
    r"""Exponential decay rate ``b`` of gradient variances with the number of qubits: ``log Var = a - b n``.

    Ordinary least squares on ``(n, log Var)``; the interval is ``b ± t_{(1+c)/2, m-2} se(b)`` with
    ``se(b) = sqrt(SSR / (m - 2) / sum (n - mean n)^2)`` over ``m >= 3`` points. ``Var ~ 2^(-b' n)``
    in the base-2 convention has ``b' = b / log 2``.

    Example:
        >>> fit = fit_decay([2, 3, 4], [1 / 8 * (3 / 8) ** (n - 1) for n in (2, 3, 4)])
        >>> round(fit.rate, 6), round(fit.high - fit.low, 6)      # log(8/3), exact data
        (0.980829, 0.0)
    """
    if isinstance(confidence, bool) or not _is_number(confidence) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be a number between 0 and 1 (e.g. 0.95), got {confidence!r}")
    try:
        n = np.asarray(qubits, dtype=float)
        v = np.asarray(variances, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("qubits and variances must be lists of numbers") from None
    if n.ndim != 1 or v.shape != n.shape or n.size < 3:
        raise ConfigError(f"qubits and variances must be flat lists of the same length >= 3, got shapes "
                          f"{n.shape} and {v.shape}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(v)) and np.all(v > 0)):
        raise ConfigError("variances must be finite and positive (their log is fitted), qubits finite")
    sxx = float(np.sum((n - n.mean()) ** 2))
    if sxx == 0:
        raise ConfigError("qubits must hold at least two different values to fit a decay rate")
    y = np.log(v)
    slope = float(np.sum((n - n.mean()) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * n.mean())
    ssr = float(np.sum((y - intercept - slope * n) ** 2))
    se = math.sqrt(ssr / (n.size - 2) / sxx)
    half = float(_sp.t.ppf((1 + confidence) / 2, n.size - 2)) * se
    return DecayFit(rate=-slope, low=-slope - half, high=-slope + half, intercept=intercept,
                    confidence=float(confidence), n_points=int(n.size))


# --------------------------------------------------------------------------------------------------
# expressibility and entangling capability


def haar_fidelity_distribution(dim: int, bins: int = 75) -> torch.Tensor:
    r"""Probability of each of ``bins`` equal bins on ``[0, 1]`` under the Haar fidelity density.

    ``P_Haar(F) = (D - 1)(1 - F)^(D - 2)`` for states of a ``D``-dimensional space integrates over
    ``[a, b]`` to ``(1 - a)^(D - 1) - (1 - b)^(D - 1)`` (float64).

    Example:
        >>> haar_fidelity_distribution(2, 4)         # one qubit: F is uniform
        tensor([0.2500, 0.2500, 0.2500, 0.2500], dtype=torch.float64)
    """
    dim = _positive_int(dim, "dim (the Hilbert space dimension)", 2)
    bins = _positive_int(bins, "bins")
    edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    tail = (1.0 - edges) ** (dim - 1)
    return tail[:-1] - tail[1:]


def _states(state_fn, params: torch.Tensor) -> torch.Tensor:
    states = state_fn(params)
    b = params.shape[0]
    if not isinstance(states, torch.Tensor) or states.ndim != 2 or states.shape[0] != b or states.shape[1] < 2:
        shape = tuple(states.shape) if isinstance(states, torch.Tensor) else type(states).__name__
        raise QcreepError(f"state_fn must return statevectors (B, 2**n) for parameters (B, n_params) = "
                          f"{tuple(params.shape)}, got {shape}")
    if not states.is_complex():
        if not states.is_floating_point():
            raise QcreepError(f"state_fn must return complex (or real floating) statevectors, got {states.dtype}")
        states = states.to(torch.complex128 if states.dtype == torch.float64 else torch.complex64)
    norms = states.abs().square().sum(-1)
    tol = math.sqrt(torch.finfo(norms.dtype).eps)
    if not torch.all((norms - 1).abs() <= tol):
        worst = float((norms - 1).abs().max())
        raise QcreepError(f"state_fn must return normalised states (|psi|^2 = 1 within {tol:.1e}); "
                          f"the worst is off by {worst:.3g}")
    return states


def _uniform_params(gen, shape, dtype) -> torch.Tensor:
    return 2 * math.pi * torch.rand(shape, generator=gen, dtype=dtype)


def expressibility(state_fn: Callable, n_params: int, *, samples: int = 5000, bins: int = 75, generator=None,
                   dtype: torch.dtype = torch.float64) -> float:
    r"""Expressibility of a parameterised state (Sim et al. 2019): ``KL(P_PQC || P_Haar)`` of pair fidelities.

    ``2 samples`` parameter vectors are drawn uniform in ``[0, 2 pi)^n_params`` (``dtype``, on the CPU)
    and passed to ``state_fn`` in one call, ``(2 samples, n_params) -> (2 samples, D)``; the first and
    second halves are paired, ``F = |<psi(theta)|psi(phi)>|^2``. ``P_PQC`` is the fraction of the
    ``samples`` fidelities in each of ``bins`` equal bins on ``[0, 1]`` (``F = 1``, and rounding above 1,
    in the last); ``P_Haar`` is :func:`haar_fidelity_distribution` for ``D``. The result is

        KL = sum over bins with P_PQC > 0 of P_PQC log(P_PQC / P_Haar):

    an empty bin contributes 0 (the limit of ``P log P``; this is what ``scipy.stats.entropy``, used by
    Sim et al., does). No epsilon is added. ``P_Haar > 0`` in every bin for ``D >= 2``. Low values mean
    more expressive; a finite sample biases it upwards by about ``(bins - 1) / (2 samples)``.

    Example:
        >>> import torch
        >>> def h_rz(p):                   # RZ(p) H |0>, up to a global phase: (|0> + e^{ip}|1>) / sqrt 2
        ...     return torch.stack([torch.ones_like(p[:, 0]), torch.exp(1j * p[:, 0])], -1) / 2 ** 0.5
        >>> round(expressibility(h_rz, 1, generator=1), 2)     # Sim et al. Fig. 1: 0.22 (see tests)
        0.2
    """
    n_params = _positive_int(n_params, "n_params", 0)
    samples = _positive_int(samples, "samples")
    bins = _positive_int(bins, "bins")
    gen = _generator(generator)
    params = _uniform_params(gen, (2 * samples, n_params), dtype)
    states = _states(state_fn, params)
    fid = (states[:samples].conj() * states[samples:]).sum(-1).abs().square()
    index = (fid.to(torch.float64) * bins).floor().clamp(0, bins - 1).long()
    p = torch.bincount(index, minlength=bins).to(torch.float64) / samples
    q = haar_fidelity_distribution(states.shape[1], bins)
    nz = p > 0
    return float((p[nz] * torch.log(p[nz] / q[nz])).sum())


def meyer_wallach(states: torch.Tensor) -> torch.Tensor:
    r"""Meyer-Wallach entanglement ``Q = 2 (1 - (1/n) sum_k tr rho_k^2)`` of a batch of pure states.

    ``states`` is ``(B, 2**n)`` (or one state ``(2**n,)``), qubit 0 the most significant bit of the
    index. For qubit ``k`` the state is reshaped to ``(B, 2, 2**(n-1))`` with qubit ``k`` first, so that
    ``rho_k = M M^dagger`` and ``tr rho_k^2 = sum |rho_k|^2``. Returns a real tensor ``(B,)`` (or a
    scalar): 0 for product states, 1 for Bell and GHZ states. States must be normalised.

    Example:
        >>> import torch
        >>> meyer_wallach(torch.tensor([1, 0, 0, 0], dtype=torch.complex64))
        tensor(0.)
    """
    if not isinstance(states, torch.Tensor) or states.ndim not in (1, 2):
        raise QcreepError("states must be a tensor (B, 2**n) or (2**n,) of statevectors")
    single = states.ndim == 1
    batch = states.reshape(1, -1) if single else states
    dim = batch.shape[1]
    n = dim.bit_length() - 1
    if dim < 2 or 2**n != dim:
        raise QcreepError(f"statevectors must have 2**n entries with n >= 1 qubits, got {dim}")
    if not batch.is_complex():
        batch = batch.to(torch.complex128 if batch.dtype == torch.float64 else torch.complex64)
    b = batch.shape[0]
    psi = batch.reshape(b, *([2] * n))
    purity = torch.zeros(b, dtype=psi.real.dtype, device=psi.device)
    for k in range(n):
        m = psi.movedim(1 + k, 1).reshape(b, 2, -1)
        rho = m @ m.conj().transpose(-1, -2)
        purity = purity + rho.abs().square().sum((-1, -2))
    q = 2 * (1 - purity / n)
    return q[0] if single else q


def entangling_capability(state_fn: Callable, n_params: int, *, samples: int = 5000, generator=None,
                          dtype: torch.dtype = torch.float64) -> float:
    r"""Entangling capability (Sim et al. 2019): mean :func:`meyer_wallach` over uniform parameters.

    ``samples`` parameter vectors uniform in ``[0, 2 pi)^n_params`` (``dtype``, on the CPU) go to
    ``state_fn`` in one call, ``(samples, n_params) -> (samples, 2**n)``.

    Example:
        >>> import torch
        >>> def ry_cnot(p):       # CNOT (RY(p) x I) |00> = cos(p/2)|00> + sin(p/2)|11>: Q = sin^2 p
        ...     c, s, z = torch.cos(p[:, 0] / 2), torch.sin(p[:, 0] / 2), torch.zeros_like(p[:, 0])
        ...     return torch.stack([c, z, z, s], -1).to(torch.complex128)
        >>> round(entangling_capability(ry_cnot, 1, samples=20000), 2)
        0.5
    """
    n_params = _positive_int(n_params, "n_params", 0)
    samples = _positive_int(samples, "samples")
    gen = _generator(generator)
    states = _states(state_fn, _uniform_params(gen, (samples, n_params), dtype))
    return float(meyer_wallach(states).mean())
