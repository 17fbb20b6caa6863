r"""A size guard: refuse settings that cannot fit in memory before anything is allocated.

:func:`estimate_memory` gives the bytes a training run of the paper's network needs, term by term,
from plain numbers (batch size, qubits, re-uploads, image shape, channels, bytes per number, number
of models stacked side by side). :func:`check_memory` compares the total with the memory this
machine has and raises a one-line :class:`~qcreep.errors.ConfigError` that names the largest term
and the settings to lower.

The estimate (all terms in bytes; ``b`` bytes per real number, ``c = 2 b`` per complex number,
``p`` bytes per trainable number: ``b``, or ``c`` with ``angles="complex"``; ``M`` models, ``B``
batch size, ``B_e`` evaluation batch size, ``n`` qubits, ``N = 2**n``, ``R`` re-uploads):

==============================  =====================================================================
term                            bytes
==============================  =====================================================================
parameters                      ``M p P``, with ``P`` the parameter count: a flipped quanvolution has
                                ``C_out C_in 15 + C_out``, a 3x3 convolution ``C_out C_in 9 + C_out``,
                                the re-uploading head ``R (4**n - 1) + out``, a linear head
                                ``in out + out``
gradients and Adam state        ``3 M p P`` (gradient, first and second moments)
re-uploading gates              ``11 M R N**2 c``: the ``R`` gates ``SU(2**n)(theta_r)`` are built as
                                dense complex matrices at every step, with their generators,
                                eigenvectors and phases (saved inside the circuit's autograd
                                function for its backward), gradients and backward temporaries
data Hamiltonians               ``8 M B N**2 b``: the padded input, ``H``, its eigenvectors and the
                                backward pass's matrices, per sample
re-upload states                ``5 M B R N c``: the states saved at every re-upload and their
                                adjoints
convolution activations         ``M B b (C_in H W + 3 sum_l C_l H_l W_l)``: the input and each
                                convolution's output with its gradient and workspace, as for
                                ``nn.Conv2d``
evaluation batch                what a no-gradient forward pass at ``B_e`` needs beyond the training
                                batch: ``max(0, M B_e b (3 N**2 + C_in H W + 2 sum_l C_l H_l W_l)
                                - (data Hamiltonians + re-upload states + convolution activations))``
==============================  =====================================================================

``H_l x W_l = (H - 2l) x (W - 2l)`` is the image size after ``l`` unpadded 3x3 convolutions. The
multiplicities (8, 8, 5, 3, 2) were measured as peak resident memory of one training step (forward,
backward, Adam step) on the CPU in float32. Gate-dominated settings (7 qubits, ``R`` = 2000 and
4000, batch 1) needed 7.1 and 7.5 copies of ``R N**2 c``; Hamiltonian-dominated ones (9 qubits,
batch 100 and 200) 8.2 copies of ``B N**2 b``, the input's gradient included. For the whole level-2
network, from 0.4 to 5 GiB, the estimate came within 20% of the measurement, mostly above; a fixed
working overhead of some 50 MiB (libraries' workspaces) is not counted. The paper's default
(batch 200, 7 qubits, 10 re-uploads, level 2) comes to about 0.2 GiB, 0.5 GiB with an evaluation
batch of 1000. The estimate does not count the dataset held in memory, nor the framework itself.

Example:
    >>> from qcreep.guard import estimate_memory, check_memory, format_bytes
    >>> est = estimate_memory(batch_size=200, n_qubits=7, n_reps=10)
    >>> format_bytes(est["total"])
    '221.6 MiB'
    >>> check_memory(est, available=16 * 2**30)  # fits: returns the available bytes
    17179869184
    >>> big = estimate_memory(n_reps=1_000_000)
    >>> check_memory(big, available=16 * 2**30)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    qcreep.errors.ConfigError: these settings need about 2.5 TiB (re-uploading gates: 1.3 TiB for ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from qcreep.checks import check_int
from qcreep.errors import ConfigError
from qcreep.layers.reupload import min_qubits

#: Fraction of the available memory that the estimate may use.
DEFAULT_FRACTION = 0.8

# Measured multiplicities (see the module docstring).
GATE_COPIES = 11
HAMILTONIAN_COPIES = 8
STATE_COPIES = 5
EVAL_HAMILTONIAN_COPIES = 3
CONV_COPIES = 3
EVAL_CONV_COPIES = 2



def _dataset_shape(name) -> tuple[int, int, int] | None:
    """The input shape qcreep feeds for a known dataset name (from its spec), else None."""
    from qcreep.data import dataset_names, get_spec

    return get_spec(name).input_shape if str(name).lower() in dataset_names() else None

_DTYPE_BYTES = {"float32": 4, "float64": 8, "torch.float32": 4, "torch.float64": 8}

# Which settings to lower when a term dominates.
_ADVICE = {
    "parameters": "lower --n-reps or --n-qubits",
    "gradients and Adam state": "lower --n-reps or --n-qubits",
    "re-uploading gates": "lower --n-reps, --n-qubits or --batch-size",
    "data Hamiltonians": "lower --batch-size or --n-qubits",
    "re-upload states": "lower --batch-size, --n-reps or --n-qubits",
    "convolution activations": "lower --batch-size",
    "evaluation batch": "lower --eval-batch-size",
}


def _get(config_like, key, default=None):
    if config_like is None:
        return default
    if isinstance(config_like, Mapping):
        value = config_like.get(key, default)
    else:
        value = getattr(config_like, key, default)
    return default if value is None else value


def _count(name: str, value, minimum: int = 1) -> int:
    return check_int(value, name, minimum, error=ConfigError)


def _dtype_bytes(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in (2, 4, 8):
            raise ConfigError(f"dtype_bytes must be 2, 4 or 8, got {value!r}")
        return value
    key = str(value)
    if key not in _DTYPE_BYTES:
        raise ConfigError(f"dtype must be float32 or float64, got {value!r}")
    return _DTYPE_BYTES[key]


def _twin_slots(config_like, settings) -> tuple[bool, bool]:
    """(twin convolutions?, twin head?) from an assignment: classical twins are sized like the
    quantum layers they replace (:mod:`qcreep.layers.twins`), so they count their parameters."""
    assignment = settings.get("assignment", _get(config_like, "assignment"))
    if not isinstance(assignment, Mapping):
        return False, False
    convs = any("twin" in str(v) for k, v in assignment.items() if str(k).startswith("conv"))
    return convs, "twin" in str(assignment.get("head", ""))


def _quantum_slots(config_like, settings) -> tuple[bool, bool]:
    """(quantum convolutions?, re-uploading head?) from explicit flags, an assignment or a level."""
    assignment = settings.get("assignment", _get(config_like, "assignment"))
    level = settings.get("level", _get(config_like, "level"))
    if isinstance(assignment, Mapping) and assignment:
        convs = any("quanv" in str(v) for k, v in assignment.items() if str(k).startswith("conv"))
        head = "reupload" in str(assignment.get("head", ""))
    elif level is not None:
        level = _count("level", level, 0)
        convs, head = level >= 1, level >= 2
    else:
        convs, head = True, True  # the paper's largest rung
    convs = bool(settings.get("quantum_convs", convs))
    head = bool(settings.get("reuploading_head", head))
    return convs, head


def estimate_memory(config_like=None, /, **settings) -> dict:
    """Bytes a training run needs, term by term, from plain numbers (see the module docstring).

    Args:
        config_like: optional mapping or object (a ``TrainConfig``, a parsed config file) to read
            settings from; keyword arguments override it. Missing settings take the paper's values.
        **settings: ``batch_size`` (200), ``eval_batch_size`` (the batch size), ``n_qubits`` (the
            smallest register that holds ``in_features`` and ``out_features``), ``n_reps`` (10),
            ``input_shape`` ((channels, height, width); from ``dataset`` if known, else (1, 32, 32)),
            ``channels`` (convolution output channels, (32, 16)), ``in_features`` (the flattened
            convolution output), ``out_features`` / ``num_classes`` (10), ``dtype`` ("float32") or
            ``dtype_bytes`` (4), ``angles`` ("real"; "complex" doubles the trainable numbers),
            ``n_models`` (1; models trained side by side, e.g. seeds stacked in one batch),
            ``level`` / ``assignment`` / ``quantum_convs`` / ``reuploading_head`` (which layers are
            quantum; default: both, the paper's level 2).

    Returns:
        ``{"terms": {name: bytes}, "total": bytes, "dominant": name, "notes": {name: text},
        "settings": {resolved numbers}}``; ``total`` is the sum of the terms.
    """
    def pick(key, default=None):
        value = settings.get(key)
        return _get(config_like, key, default) if value is None else value

    batch = _count("batch_size", pick("batch_size", 200))
    eval_batch = _count("eval_batch_size", pick("eval_batch_size", batch))
    n_reps = _count("n_reps", pick("n_reps", 10))
    n_models = _count("n_models", pick("n_models", 1))
    b = _dtype_bytes(settings.get("dtype_bytes") or pick("dtype", "float32"))
    angles = pick("angles", "real")
    if angles not in ("real", "complex"):
        raise ConfigError(f"angles must be real or complex, got {angles!r}")
    c = 2 * b
    p = c if angles == "complex" else b

    dataset = pick("dataset")
    shape = pick("input_shape", _dataset_shape(dataset) or (1, 32, 32))
    if len(tuple(shape)) != 3:
        raise ConfigError(f"input_shape must be (channels, height, width), got {shape!r}")
    c_in, height, width = (_count("input_shape", int(v)) for v in shape)
    channels = tuple(_count("channels", int(v)) for v in pick("channels", (32, 16)))
    out_features = _count("out_features", pick("out_features", pick("num_classes", 10)))

    # 3x3 convolutions, stride 1, no padding: each shrinks the image by 2 in both directions
    conv_params_q = conv_params_c = 0
    conv_out = []
    prev, h, w = c_in, height, width
    for c_out in channels:
        h, w = h - 2, w - 2
        if h < 1 or w < 1:
            raise ConfigError(f"input {c_in}x{height}x{width} is too small for {len(channels)} 3x3 convolutions")
        conv_params_q += c_out * prev * 15 + c_out
        conv_params_c += c_out * prev * 9 + c_out
        conv_out.append(c_out * h * w)
        prev = c_out
    in_features = _count("in_features", pick("in_features", prev * h * w))

    quantum_convs, reuploading = _quantum_slots(config_like, settings)
    twin_convs, twin_head = _twin_slots(config_like, settings)
    needed = min_qubits(in_features, out_features)
    n = pick("n_qubits", needed)
    n = _count("n_qubits", n)
    if (reuploading or twin_head) and n < needed:
        raise ConfigError(f"the re-uploading head ({in_features} -> {out_features}) needs at least {needed} qubits "
                          f"(4**n >= {in_features} inputs and 2**n >= {out_features} outputs), got n_qubits={n}")
    dim = 2**n

    n_params = conv_params_q if quantum_convs or twin_convs else conv_params_c
    if reuploading or twin_head:
        n_params += n_reps * (4**n - 1) + out_features
    else:
        n_params += in_features * out_features + out_features

    image = c_in * height * width
    act_train = batch * b * (image + CONV_COPIES * sum(conv_out))
    ham = HAMILTONIAN_COPIES * batch * dim * dim * b if reuploading else 0
    states = STATE_COPIES * batch * n_reps * dim * c if reuploading else 0
    gates = GATE_COPIES * n_reps * dim * dim * c if reuploading else 0
    eval_need = eval_batch * b * (image + EVAL_CONV_COPIES * sum(conv_out))
    if reuploading:
        eval_need += eval_batch * EVAL_HAMILTONIAN_COPIES * dim * dim * b
    eval_excess = max(0, eval_need - (ham + states + act_train))

    terms = {
        "parameters": n_params * p,
        "gradients and Adam state": 3 * n_params * p,
        "re-uploading gates": gates,
        "data Hamiltonians": ham,
        "re-upload states": states,
        "convolution activations": act_train,
        "evaluation batch": eval_excess,
    }
    terms = {k: int(v) * n_models for k, v in terms.items()}
    stack = f", {n_models} models" if n_models > 1 else ""
    notes = {
        "parameters": f"{n_params:,} parameters{stack}",
        "gradients and Adam state": f"for {n_params:,} parameters{stack}",
        "re-uploading gates": f"for n_reps={n_reps} at {n} qubits{stack}",
        "data Hamiltonians": f"for batch_size={batch} at {n} qubits{stack}",
        "re-upload states": f"for batch_size={batch}, n_reps={n_reps} at {n} qubits{stack}",
        "convolution activations": f"for batch_size={batch} on {c_in}x{height}x{width} inputs{stack}",
        "evaluation batch": f"for eval_batch_size={eval_batch} at {n} qubits{stack}",
    }
    total = sum(terms.values())
    dominant = max(terms, key=terms.get)
    return {
        "terms": terms,
        "total": total,
        "dominant": dominant,
        "notes": notes,
        "settings": {
            "batch_size": batch, "eval_batch_size": eval_batch, "n_qubits": n, "n_reps": n_reps,
            "input_shape": (c_in, height, width), "channels": channels, "in_features": in_features,
            "out_features": out_features, "dtype_bytes": b, "angles": angles, "n_models": n_models,
            "quantum_convs": quantum_convs, "reuploading_head": reuploading, "n_params": n_params,
        },
    }


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: binary units up to EiB, one decimal; beyond 1024 EiB, bytes in
    scientific notation (``'1.6e+28 B'``), so that no size reads as thousands of the largest unit.

    Example:
        >>> format_bytes(512), format_bytes(3 * 2**60), format_bytes(2**100)
        ('512 B', '3.0 EiB', '1.3e+30 B')
    """
    value = float(n)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in _UNITS[1:]:
        value /= 1024
        if abs(value) < 1023.95:  # what rounds to 1024.0 is shown in the next unit
            return f"{value:.1f} {unit}"
    return f"{float(n):.1e} B"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> int | None:
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def _cgroup_available() -> int | None:
    """Room left under this process's cgroup memory limit, where one is set (containers)."""
    pairs = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
             ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit_path, usage_path in pairs:
        try:
            with open(limit_path) as fh:
                limit = fh.read().strip()
            with open(usage_path) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None
        return max(0, int(limit) - usage)
    return None


def available_memory(device="cpu") -> int | None:
    """Bytes this process can still allocate on ``device``; ``None`` where it cannot be told.

    CPU: ``MemAvailable`` from ``/proc/meminfo`` (else ``os.sysconf``), capped by the room left
    under a cgroup memory limit. CUDA: the free memory that ``torch.cuda.mem_get_info`` reports.
    """
    kind = str(device).split(":")[0]
    if kind == "cuda":
        try:
            import torch

            if not torch.cuda.is_available():
                return None
            free, _total = torch.cuda.mem_get_info(torch.device(str(device)))
            return int(free)
        except (RuntimeError, ValueError, AssertionError):
            return None
    found = [v for v in (_meminfo_available() or _sysconf_available(), _cgroup_available()) if v is not None]
    return min(found) if found else None


def check_memory(estimate: dict, device="cpu", available: int | None = None, *,
                 fraction: float = DEFAULT_FRACTION) -> int | None:
    """Refuse an :func:`estimate_memory` result that exceeds ``fraction`` of the available memory.

    Args:
        estimate: the dict from :func:`estimate_memory`.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: whose memory to compare with.
        available: bytes available, to override the measurement (tests, dry runs).
        fraction: the share of ``available`` the estimate may take (0.8).

    Returns:
        The available bytes compared with, or ``None`` where they cannot be told (nothing is
        refused then).

    Raises:
        ConfigError: one line naming the total, the largest term and the settings to lower.
    """
    if available is None:
        available = available_memory(device)
    if available is None:
        return None
    total = estimate["total"]
    if total <= fraction * available:
        return available
    dominant = estimate["dominant"]
    where = "this machine has" if str(device).split(":")[0] == "cpu" else f"{device} has"
    advice = _ADVICE.get(dominant, "lower --batch-size, --n-reps or --n-qubits")
    if estimate.get("settings", {}).get("n_models", 1) > 1:
        advice += ", or train fewer models at once"
    note = estimate.get("notes", {}).get(dominant, "")
    cause = f"{dominant}: {format_bytes(estimate['terms'][dominant])}" + (f" {note}" if note else "")
    raise ConfigError(f"these settings need about {format_bytes(total)} ({cause}) but {where} "
                      f"{format_bytes(available)} available; {advice}")


def guard(config_like=None, /, device=None, available: int | None = None, **settings) -> dict:
    """:func:`estimate_memory` then :func:`check_memory`; returns the estimate when it fits.

    ``device`` defaults to the ``device`` of ``config_like`` (else ``"cpu"``).
    """
    estimate = estimate_memory(config_like, **settings)
    check_memory(estimate, device or _get(config_like, "device", "cpu"), available)
    return estimate


def build_estimate(config_like=None, /, **settings) -> dict:
    """What building the model (not training it) needs: its parameters, as :func:`estimate_memory`
    counts them; the same dict with that one term (``qcreep summary`` builds, it does not train)."""
    estimate = estimate_memory(config_like, **settings)
    terms = {"parameters": estimate["terms"]["parameters"]}
    return {**estimate, "terms": terms, "total": terms["parameters"], "dominant": "parameters"}


def guard_build(config_like=None, /, device=None, available: int | None = None, **settings) -> dict:
    """:func:`build_estimate` then :func:`check_memory`: refuse a model whose parameters alone do not fit."""
    estimate = build_estimate(config_like, **settings)
    check_memory(estimate, device or _get(config_like, "device", "cpu"), available)
    return estimate


def estimate_backbone(config_like, backbone, /, *, n_models: int = 1) -> dict:
    """Bytes one training step of any model's rung needs, slot by slot (the terms of :func:`estimate_memory`).

    The model's own parameters count as they are; a quantum slot counts the parameters of its
    layer, and each re-uploading slot its gates, data Hamiltonians and states as in the module
    docstring (a dense slot applied to ``(*, F)`` inputs runs ``prod(*)`` circuits per example).
    Activations count ``3 B b`` per output number of every slot: the model's other modules
    (activations, pooling, attention) are not counted.
    """
    import math

    from qcreep.creep import ORIGINAL
    from qcreep.layers.quanv import patch_qubits

    batch = _count("batch_size", _get(config_like, "batch_size", 200))
    eval_batch = _count("eval_batch_size", _get(config_like, "eval_batch_size", batch))
    n_reps = _count("n_reps", _get(config_like, "n_reps", 10))
    b = _dtype_bytes(_get(config_like, "dtype", "float32"))
    angles = _get(config_like, "angles", "real")
    c = 2 * b
    p = c if angles == "complex" else b
    assignment = _get(config_like, "assignment") or {}
    fixed_q = _get(config_like, "n_qubits")
    params = sum(v.numel() for v in backbone.found.model.parameters())
    gates = ham = states = act = eval_need = 0
    largest = None
    for s in backbone.found.slots:
        layer = assignment.get(s.name, ORIGINAL)
        act += CONV_COPIES * batch * b * math.prod(s.output_shape)
        eval_need += EVAL_CONV_COPIES * eval_batch * b * math.prod(s.output_shape)
        if layer in (ORIGINAL, "linear", "conv2d"):
            continue
        params -= s.params
        if s.kind == "dense":
            lead = math.prod(s.input_shape[:-1])
            n = max(fixed_q or 0, min_qubits(s.slot.in_features, s.slot.out_features))
            dim = 2**n
            params += n_reps * (4**n - 1) + s.slot.out_features + 1
            if layer == "data_reuploading":
                slot_gates = GATE_COPIES * n_reps * dim * dim * c
                slot_ham = HAMILTONIAN_COPIES * batch * lead * dim * dim * b
                gates, ham = gates + slot_gates, ham + slot_ham
                states += STATE_COPIES * batch * lead * n_reps * dim * c
                eval_need += EVAL_HAMILTONIAN_COPIES * eval_batch * lead * dim * dim * b
                if largest is None or slot_gates + slot_ham > largest[1]:
                    largest = (s.name, slot_gates + slot_ham, n)
        else:
            q = patch_qubits(s.slot.kernel_size)
            params += s.slot.out_channels * s.slot.in_channels * (4**q - 1) + s.slot.out_channels
    where = f" in slot {largest[0]} ({largest[2]} qubits)" if largest else ""
    terms = {"parameters": params * p, "gradients and Adam state": 3 * params * p, "re-uploading gates": gates,
             "data Hamiltonians": ham, "re-upload states": states, "convolution activations": act,
             "evaluation batch": max(0, eval_need - (ham + states + act))}
    terms = {k: int(v) * n_models for k, v in terms.items()}
    notes = {"parameters": f"{params:,} parameters", "gradients and Adam state": f"for {params:,} parameters",
             "re-uploading gates": f"for n_reps={n_reps}{where}", "data Hamiltonians": f"for batch_size={batch}{where}",
             "re-upload states": f"for batch_size={batch}, n_reps={n_reps}{where}",
             "convolution activations": f"for batch_size={batch}",
             "evaluation batch": f"for eval_batch_size={eval_batch}"}
    total = sum(terms.values())
    return {"terms": terms, "total": total, "dominant": max(terms, key=terms.get), "notes": notes,
            "settings": {"batch_size": batch, "n_reps": n_reps, "n_models": n_models, "n_params": params}}


def guard_backbone(config_like, backbone, /, device=None, available: int | None = None, *, n_models: int = 1) -> dict:
    """:func:`estimate_backbone` then :func:`check_memory`; returns the estimate when it fits."""
    estimate = estimate_backbone(config_like, backbone, n_models=n_models)
    check_memory(estimate, device or _get(config_like, "device", "cpu"), available)
    return estimate
