"""The layer contract as a public check: ``assert_valid_layer`` for qcreep's layers and for yours.

Every registered layer, classical or quantum, is checked by this function in qcreep's own test
suite; a third-party layer (registered with :func:`qcreep.layers.register_layer`, or just an
``nn.Module`` built for a slot) gets the same checks by calling it::

    from qcreep.slots import DenseSlot
    from qcreep.testing import assert_valid_layer

    report = assert_valid_layer("my_layer", DenseSlot(10, 4), options={"depth": 2})
    report["checks"]        # the names of the checks that ran and passed
    report["skipped"]       # {check: why it does not apply}

A failed check raises ``AssertionError`` whose message names the layer, the check and the numbers.
What is checked, where it applies:

- ``shapes``: the output is ``(B, *slot.output_shape(input))``, real (never complex), of the
  input's dtype, and finite;
- ``batch``: each row of the output depends only on its row of the input;
- ``gradients``: every parameter, and the input, gets a finite, nonzero gradient;
- ``gradcheck``: ``torch.autograd.gradcheck`` of a float64 copy, with respect to the input and
  every parameter (finite differences against the analytic backward pass);
- ``dtype``: a copy moved to float64 has float64 parameters and output, which agree with the
  float32 output to float32 rounding;
- ``reference``: for a quantum layer, ``forward`` against the slow ``forward_reference`` in
  float64, to 1e-9;
- ``physicality``: unitarity error and state norms (``physicality``) within rounding of a
  unitary circuit and a normalised state, in float32 and in float64;
- ``circuits``: the layer's circuits for one input (:meth:`QuantumLayer.circuits`), simulated
  by the plain simulator of :mod:`qcreep.sim.program` (gates checked unitary), give the layer's
  output through ``from_measurements``, to 1e-9 in float64;
- ``export``: the same circuits translated to Qiskit (statevectors equal) and PennyLane (measured
  values equal), where those packages are installed (``pip install "qcreep[hardware]"``);
- ``declared``: ``parameter_shapes``, ``num_parameters``, ``qubits_for(slot)`` and ``fits(slot)``
  agree with the layer built;
- ``seed``: with a registered name, two layers built under the same ``torch.manual_seed`` are
  equal, bitwise (same process, same shapes), and another seed gives another layer;
- ``state_dict``: loading one layer's ``state_dict`` into another gives its outputs exactly;
- ``pickle``: a pickled and unpickled copy gives the same outputs exactly.
"""

from __future__ import annotations

import copy
import pickle

import torch
from torch import nn

from qcreep.layers.base import QuantumLayer

#: float64 agreement of two exact paths (fast and reference, circuits and layer).
EXACT_TOL = 1e-9
#: float32 against float64 for the same parameters.
SINGLE_TOL = 1e-4


def _fail(name: str, check: str, detail: str):
    raise AssertionError(f"assert_valid_layer({name}): {check}: {detail}")


def _default_input_shape(slot) -> tuple[int, ...]:
    if slot.kind == "dense":
        return (slot.in_features,)
    kh, kw = slot.kernel_hw
    dilation = slot.dilation if isinstance(slot.dilation, int) else max(slot.dilation)
    side = max(6, dilation * (max(kh, kw) - 1) + 3)
    return (slot.in_channels, side, side)


def _inputs(shape, batch: int, dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *shape), generator=generator, dtype=torch.float64).to(dtype)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def _float64_copy(layer: nn.Module) -> nn.Module:
    return copy.deepcopy(layer).to(torch.float64)


def _gradcheck(name: str, layer: nn.Module, x: torch.Tensor):
    double = _float64_copy(layer)
    names = [n for n, _ in double.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in double.named_parameters())
    x = x.detach().to(torch.float64).requires_grad_(True)

    def fn(inp, *values):
        return torch.func.functional_call(double, dict(zip(names, values)), (inp,))

    try:
        torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4)
    except Exception as exc:  # gradcheck raises GradcheckError with the mismatching Jacobians
        _fail(name, "gradcheck", " ".join(str(exc).split())[:400])


def assert_valid_layer(layer_or_name, slot, *, options: dict | None = None, input_shape=None, batch: int = 3,
                       seed: int = 0, export: bool = True) -> dict:
    """Check a layer against qcreep's layer contract (see the module docstring); raise AssertionError if not.

    Args:
        layer_or_name: a registered layer name (built with :func:`qcreep.layers.create_layer` for
            ``slot`` and ``options`` under ``torch.manual_seed(seed)``), or an ``nn.Module`` already
            built for ``slot`` (then the ``seed`` check, which needs to build, is skipped).
        slot: the slot it fills (:class:`qcreep.slots.DenseSlot` or :class:`qcreep.slots.ConvSlot`).
        options: factory options for a registered name (``{"n_reps": 2}``, say).
        input_shape: the per-example input shape (default: ``(in_features,)``, or a 6x6 image, larger
            for large or dilated kernels).
        batch: the batch size of the checks (at least 2, for the batch-independence check).
        export: also translate the circuits to Qiskit and PennyLane where they are installed.

    Returns:
        ``{"layer": name, "checks": [the checks that ran and passed], "skipped": {check: reason}}``.

    Example:
        >>> from qcreep.slots import DenseSlot
        >>> report = assert_valid_layer("data_reuploading", DenseSlot(10, 4), options={"n_reps": 2})
        >>> "reference" in report["checks"] and "circuits" in report["checks"]
        True
    """
    from qcreep.layers import create_layer

    options = dict(options or {})
    if batch < 2:
        raise ValueError(f"assert_valid_layer needs batch >= 2 to check that rows are independent, got {batch}")
    if isinstance(layer_or_name, nn.Module):
        layer, name, registered = layer_or_name, type(layer_or_name).__name__, False
    else:
        name, registered = str(layer_or_name), True

        def build(s):
            torch.manual_seed(s)
            return create_layer(layer_or_name, slot, **options)

        layer = build(seed)
    shape = tuple(input_shape) if input_shape is not None else _default_input_shape(slot)
    checks, skipped = [], {}
    quantum = isinstance(layer, QuantumLayer)
    dtype = next((p.dtype for p in layer.parameters() if not p.is_complex()), torch.float32)
    x = _inputs(shape, batch, dtype, seed + 101)

    # shapes, dtype, finiteness
    with torch.no_grad():
        y = layer(x)
    expected = (batch, *slot.output_shape(shape))
    if tuple(y.shape) != expected:
        _fail(name, "shapes", f"output {tuple(y.shape)} for input {tuple(x.shape)}, expected {expected}")
    if y.is_complex():
        _fail(name, "shapes", f"the output is complex ({y.dtype}); a layer gives real outputs, computed explicitly")
    if y.dtype != x.dtype:
        _fail(name, "shapes", f"output dtype {y.dtype} for input dtype {x.dtype}")
    if not torch.isfinite(y).all():
        _fail(name, "shapes", "the output has NaN or inf")
    checks.append("shapes")

    with torch.no_grad():
        rows = torch.cat([layer(x[i:i + 1]) for i in range(batch)])
    if not torch.allclose(rows, y, atol=1e-5, rtol=1e-5):
        _fail(name, "batch", f"a row's output depends on the other rows (max difference {_max_diff(rows, y):.3g})")
    checks.append("batch")

    # gradients on every parameter and on the input
    params = dict(layer.named_parameters())
    if not params:
        _fail(name, "gradients", "the layer has no trainable parameters")
    layer.zero_grad(set_to_none=True)
    xg = x.clone().requires_grad_(True)
    out = layer(xg)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 5), dtype=out.dtype)).sum().backward()
    for pname, p in params.items():
        if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0:
            _fail(name, "gradients", f"parameter {pname} gets no finite nonzero gradient")
    if xg.grad is None or not torch.isfinite(xg.grad).all() or not xg.grad.abs().sum() > 0:
        _fail(name, "gradients", "the input gets no finite nonzero gradient")
    layer.zero_grad(set_to_none=True)
    checks.append("gradients")

    _gradcheck(name, layer, x[:2])
    checks.append("gradcheck")

    double = _float64_copy(layer)
    x64 = x.to(torch.float64)
    if any(p.dtype not in (torch.float64, torch.complex128) for p in double.parameters()):
        _fail(name, "dtype", ".to(torch.float64) leaves parameters in another dtype")
    with torch.no_grad():
        y64 = double(x64)
    if y64.dtype != torch.float64:
        _fail(name, "dtype", f"the float64 copy gives {y64.dtype}")
    scale = max(1.0, float(y64.abs().max()))
    if dtype == torch.float32 and _max_diff(y, y64) > SINGLE_TOL * scale:
        _fail(name, "dtype", f"float32 and float64 differ by {_max_diff(y, y64):.3g}, more than float32 rounding")
    checks.append("dtype")

    if quantum:
        with torch.no_grad():
            ref = double.forward_reference(x64)
        if _max_diff(ref, y64) > EXACT_TOL * scale:
            _fail(name, "reference", f"forward and forward_reference differ by {_max_diff(ref, y64):.3g} in float64")
        checks.append("reference")

        for label, module, inp, tol in (("float32", layer, x, 1e-5), ("float64", double, x64, 1e-10)):
            report = module.physicality(inp)
            err = report.get("max_unitarity_error")
            if err is None or not err < tol:
                _fail(name, "physicality", f"{label} unitarity error {err!r} (at most {tol:g} for a unitary circuit)")
            for key in ("min_state_norm", "max_state_norm"):
                if key in report and not abs(report[key] - 1.0) < tol:
                    _fail(name, "physicality", f"{label} {key} {report[key]!r}, not 1 within {tol:g}")
        checks.append("physicality")

        programs = double.circuits(x64[0])
        if not programs:
            _fail(name, "circuits", "circuits(x) returned no circuit")
        for program in programs:
            for gate in program.gates:
                m = gate.matrix.detach().to(torch.complex128)
                eye = torch.eye(m.shape[0], dtype=torch.complex128)
                if float((m.conj().T @ m - eye).abs().max()) > 1e-9:
                    _fail(name, "circuits", f"gate {gate.label!r} of circuit {program.label!r} is not unitary")
        from_circuits = double.from_measurements(x64[0], [p.measured() for p in programs])
        if tuple(from_circuits.shape) != tuple(y64.shape[1:]) or _max_diff(from_circuits, y64[0]) > EXACT_TOL * scale:
            _fail(name, "circuits", f"the circuits' measured values give {tuple(from_circuits.shape)} outputs that "
                  f"differ from the layer's by {_max_diff(from_circuits.reshape(-1), y64[0].reshape(-1)):.3g}")
        checks.append("circuits")

        if export:
            _check_export(name, programs[:8], checks, skipped)
        else:
            skipped["export"] = "export=False"

        shapes = {n: tuple(p.shape) for n, p in layer.named_parameters()}
        if layer.parameter_shapes() != shapes:
            _fail(name, "declared", f"parameter_shapes() {layer.parameter_shapes()} but the parameters are {shapes}")
        total = sum(p.numel() for p in layer.parameters())
        if layer.num_parameters != total:
            _fail(name, "declared", f"num_parameters {layer.num_parameters} but the parameters hold {total}")
        needed = type(layer).qubits_for(slot)
        if needed != layer.n_qubits:
            _fail(name, "declared", f"qubits_for(slot) says {needed} but the layer has {layer.n_qubits} qubits")
        reason = type(layer).fits(slot)
        if reason is not None:
            _fail(name, "declared", f"fits(slot) refuses the slot it was built for: {reason}")
        checks.append("declared")
    else:
        for check in ("reference", "physicality", "circuits", "export", "declared"):
            skipped[check] = "not a QuantumLayer"

    if registered:
        a, b, c = build(seed), build(seed), build(seed + 1)
        with torch.no_grad():
            ya, yb, yc = a(x), b(x), c(x)
        if not torch.equal(ya, yb) or any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                                            b.state_dict().values())):
            _fail(name, "seed", "two layers built under the same torch.manual_seed differ")
        if torch.equal(ya, yc):
            _fail(name, "seed", f"seeds {seed} and {seed + 1} give the same layer")
        checks.append("seed")
        other = c
    else:
        skipped["seed"] = "an instance was given, not a registered name"
        other = copy.deepcopy(layer)
        with torch.no_grad():
            for p in other.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + 9)).to(p.dtype))

    other.load_state_dict(layer.state_dict())
    with torch.no_grad():
        if not torch.equal(other(x), y):
            _fail(name, "state_dict", "a layer loaded with this layer's state_dict gives other outputs")
    checks.append("state_dict")

    try:
        clone = pickle.loads(pickle.dumps(layer))
    except Exception as exc:
        _fail(name, "pickle", f"the layer cannot be pickled: {type(exc).__name__}: {exc}")
    with torch.no_grad():
        if not torch.equal(clone(x), y):
            _fail(name, "pickle", "the unpickled layer gives other outputs")
    checks.append("pickle")
    return {"layer": name, "checks": checks, "skipped": skipped}


def _check_export(name: str, programs: list, checks: list, skipped: dict) -> None:
    """The circuits translated to Qiskit and PennyLane measure what the plain simulator measures."""
    try:
        from qiskit.quantum_info import Statevector
    except ImportError:
        skipped["export:qiskit"] = "qiskit is not installed"
    else:
        from qcreep.hardware.export import program_to_qiskit

        for program in programs:
            state = torch.as_tensor(Statevector(program_to_qiskit(program)).data)
            diff = float((state - program.statevector()).abs().max())
            if diff > EXACT_TOL:
                _fail(name, "export", f"the Qiskit circuit's statevector differs by {diff:.3g}")
        checks.append("export:qiskit")
    try:
        import pennylane  # noqa: F401
    except ImportError:
        skipped["export:pennylane"] = "pennylane is not installed"
    else:
        from qcreep.hardware.export import program_to_pennylane

        for program in programs:
            value = torch.as_tensor(program_to_pennylane(program)(), dtype=torch.float64)
            diff = float((value - program.measured()).abs().max())
            if diff > EXACT_TOL:
                _fail(name, "export", f"the PennyLane circuit measures values that differ by {diff:.3g}")
        checks.append("export:pennylane")
