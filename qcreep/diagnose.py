r"""The diagnostics of a finished ladder: why a rung wins or loses, rung by rung and twin by twin.

For every complete run in a results folder, :func:`diagnose_folder` computes, with the pure
functions of :mod:`qcreep.diagnostics`:

* the **effective dimension** (Abbas et al. 2021) of the whole network over the first
  ``inputs`` examples of the run's fitted split, at initialisation (the network rebuilt from the
  run's seed, as training began) and at the end (the checkpoint's weights), for each of the
  dataset sizes ``sizes``. Each value uses one weight vector (``M = 1``), so the trace
  normalisation is that vector's own Fisher trace; ``d_eff / d`` is given beside it;
* the **gradient variance at initialisation**: the variance of the cross-entropy gradient on those
  inputs over ``inits`` fresh initialisations of the same rung (seeds drawn from ``seed``), per
  slot (the mean over the slot's parameters) and over the whole network;
* for each quantum layer, the **expressibility** and **entangling capability** (Sim et al. 2019)
  of its trainable ansatz (:meth:`qcreep.layers.QuantumLayer.ansatz`) for the input it receives
  from the first fitted example at initialisation, over ``samples`` uniform parameter pairs. A
  finite sample biases the expressibility upwards by about ``(bins - 1) / (2 samples)``
  (0.074 at 500 pairs); it is stored beside the value.

Classical layers and twins get the first two (they apply to any network); the last two apply to
circuits only. Each run's results go to ``OUT/diagnostics/RUN.json`` (written atomically); a run
whose file already holds the same settings is read back, not computed again.

:func:`family_scan` adds, for each quantum layer used in the folder, the gradient variance of the
layer alone against its register size (its first output on random inputs, over ``scan_inits``
initialisations, circuit parameters only) and the fitted decay rate ``b`` of ``log Var = a - b n``
with its 95% interval (:func:`qcreep.diagnostics.fit_decay`): ``OUT/diagnostics/families.json``.

Runs with complex angles have no physical circuit and are skipped.

Example:
    >>> from qcreep.diagnose import DiagnoseSpec, diagnose_folder
    >>> results = diagnose_folder("qcreep-results", DiagnoseSpec(inputs=50))  # doctest: +SKIP
    >>> results[0]["effective_dimension"]["trained"]  # doctest: +SKIP
    [41.2, 37.9, 35.0, 33.4, 32.3]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import qcreep
from qcreep.checks import check_int
from qcreep.creep import quantum_layers
from qcreep.diagnostics import (
    effective_dimension,
    entangling_capability,
    expressibility,
    fit_decay,
    gradient_variance,
)
from qcreep.errors import ConfigError, QcreepError
from qcreep.files import atomic_write_json
from qcreep.layers import create_layer, get_layer_entry, is_quantum_layer
from qcreep.records import read_record
from qcreep.train import build_run_model, prepare_data
from qcreep.trained import config_from_record, load_trained

DIAGNOSTICS_VERSION = 1
DIAGNOSTICS_DIR = "diagnostics"
FAMILIES_FILE = "families.json"
DEFAULT_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)
DEFAULT_SCAN_QUBITS = (2, 3, 4, 5)
BINS = 75


@dataclass(frozen=True)
class DiagnoseSpec:
    """What to compute, and with how many samples.

    Args:
        inputs: examples of the fitted split (the first ones) for the Fisher and the gradients.
        inits: fresh initialisations for the gradient variance (at least 2).
        samples: parameter pairs for the expressibility (and parameter vectors for the
            entangling capability) of each quantum layer.
        sizes: dataset sizes ``n`` of the effective dimension (each at least 19).
        seed: seed of every random draw (initialisations, parameter samples, scan inputs).
        scan_qubits: register sizes of :func:`family_scan` (at least three, for the fit).
        scan_inits: initialisations per register size in the scan.
    """

    inputs: int = 50
    inits: int = 10
    samples: int = 500
    sizes: tuple = DEFAULT_SIZES
    seed: int = 0
    scan_qubits: tuple = DEFAULT_SCAN_QUBITS
    scan_inits: int = 200

    def validate(self) -> DiagnoseSpec:
        check_int(self.inputs, "diagnostic inputs", 1, error=ConfigError)
        check_int(self.inits, "initialisations", 2, error=ConfigError)
        check_int(self.samples, "parameter samples", 1, error=ConfigError)
        check_int(self.seed, "diagnostic seed", 0, error=ConfigError)
        check_int(self.scan_inits, "scan initialisations", 2, error=ConfigError)
        sizes = tuple(sorted({int(check_int(n, "dataset size", 19, error=ConfigError)) for n in self.sizes}))
        if not sizes:
            raise ConfigError("give at least one dataset size for the effective dimension, e.g. 1000")
        qubits = tuple(sorted({int(check_int(n, "scan qubits", 1, error=ConfigError)) for n in self.scan_qubits}))
        if len(qubits) < 3:
            raise ConfigError(f"the qubit scan needs at least three register sizes to fit a decay rate, got "
                              f"{list(qubits)}; e.g. 2 3 4 5")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "scan_qubits", qubits)
        return self

    def key(self) -> dict:
        """The settings that change the numbers (a saved file with other settings is computed again)."""
        return {"inputs": self.inputs, "inits": self.inits, "samples": self.samples, "sizes": list(self.sizes),
                "seed": self.seed, "bins": BINS}

    def scan_key(self) -> dict:
        return {"qubits": list(self.scan_qubits), "inits": self.scan_inits, "seed": self.seed}


def diagnostics_path(out_dir, run_id: str) -> Path:
    return Path(out_dir) / DIAGNOSTICS_DIR / f"{run_id}.json"


def _fresh_model(config, seed: int) -> nn.Module:
    """The rung of ``config`` initialised from ``seed``, in float64, the caller's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        model = build_run_model(config.replace(seed=seed, device="cpu"))
    return model.to(torch.float64).eval()


def _slot_variances(result, slots) -> dict[str, float]:
    """Mean gradient variance over the parameters of each slot (names ``slot.*``)."""
    out = {}
    for slot in slots:
        values = [v for name, v in result.elementwise.items() if name.startswith(slot + ".")]
        count = sum(v.numel() for v in values)
        if count:
            out[slot] = float(sum(float(v.sum()) for v in values) / count)
    return out


class _SharedStates:
    """A ``state_fn`` that remembers its last batch, so that the entangling capability (whose parameter
    vectors are the first half of the expressibility's under the same seed) reuses those states."""

    def __init__(self, state_fn):
        self.state_fn, self.params, self.states = state_fn, None, None

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        b = params.shape[0]
        if self.params is not None and b <= self.params.shape[0] and torch.equal(params, self.params[:b]):
            return self.states[:b]
        self.params, self.states = params, self.state_fn(params)
        return self.states


def _layer_inputs(model: nn.Module, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
    """The input each named submodule receives for the one example ``x``."""
    seen, hooks = {}, []
    for name in names:
        def hook(module, args, name=name):
            seen.setdefault(name, args[0].detach()[0])
        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return seen


def _ansatz_measures(layer, x, spec: DiagnoseSpec) -> dict:
    if layer.circuit_parameters == ():
        # a fixed circuit (nothing quantum trained): no ansatz to sample
        return {"qubits": int(layer.n_qubits), "circuit_params": 0, "expressibility": None,
                "expressibility_bias": None, "entangling_capability": None, "seconds": 0.0}
    n_params, state_fn = layer.ansatz(x)
    shared = _SharedStates(state_fn)
    started = time.perf_counter()
    expr = expressibility(shared, n_params, samples=spec.samples, bins=BINS, generator=spec.seed)
    ent = entangling_capability(shared, n_params, samples=spec.samples, generator=spec.seed)
    return {"qubits": int(layer.n_qubits), "circuit_params": int(n_params), "expressibility": expr,
            "expressibility_bias": (BINS - 1) / (2 * spec.samples), "entangling_capability": ent,
            "seconds": time.perf_counter() - started}


def diagnose_run(record: dict, out_dir, spec: DiagnoseSpec, *, log=None) -> dict:
    """The diagnostics of one complete run (see the module docstring)."""
    config = config_from_record(record)
    tag = f"[{config.dataset} {config.rung_label} seed {config.seed}]"
    started = time.perf_counter()
    data = prepare_data(config)
    x = data.fit.x[:spec.inputs].to(torch.float64)
    y = data.fit.y[:spec.inputs]
    ckpt = Path(out_dir) / "checkpoints" / f"{record['run_id']}.pt"
    initial = _fresh_model(config, config.seed)
    trained = load_trained(ckpt).model.to(torch.float64).eval() if ckpt.is_file() else None
    d = sum(p.numel() for p in initial.parameters())
    sizes = list(spec.sizes)

    t0 = time.perf_counter()
    ed_init = effective_dimension(initial, x, sizes, nn.utils.parameters_to_vector(initial.parameters())[None])
    ed_end = None
    if trained is not None:
        ed_end = effective_dimension(trained, x, sizes, nn.utils.parameters_to_vector(trained.parameters())[None])
    ed_seconds = time.perf_counter() - t0
    if log is not None:
        end = f", trained {ed_end[len(sizes) // 2]:.1f}" if ed_end is not None else ""
        log(f"{tag} effective dimension at n={sizes[len(sizes) // 2]:g}: init {ed_init[len(sizes) // 2]:.1f}{end} "
            f"of d={d} ({ed_seconds:.1f}s)")

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(spec.seed * 1_000_003 + config.seed)

    def factory(g):
        return _fresh_model(config, int(torch.randint(0, 2**31 - 1, (1,), generator=g)))

    grads = gradient_variance(factory, x, spec.inits, targets=y, generator=gen)
    slots = list(config.assignment)
    gv_seconds = time.perf_counter() - t0
    if log is not None:
        log(f"{tag} gradient variance over {spec.inits} initialisations: {grads.mean:.3g} ({gv_seconds:.1f}s)")

    layers = {}
    quantum = {name: m for name, m in quantum_layers(initial).items() if is_quantum_layer(m)}
    inputs = _layer_inputs(initial, x, list(quantum)) if quantum else {}
    for name, layer in quantum.items():
        layers[name] = {"layer": config.assignment.get(name), **_ansatz_measures(layer, inputs[name], spec)}
        if log is not None:
            e = layers[name]
            if e["expressibility"] is None:
                log(f"{tag} {name}: a fixed circuit, no trainable ansatz to sample")
            else:
                log(f"{tag} {name}: expressibility {e['expressibility']:.3f}, entangling capability "
                    f"{e['entangling_capability']:.3f} ({e['seconds']:.1f}s)")

    return {
        "diagnostics_version": DIAGNOSTICS_VERSION, "qcreep_version": qcreep.__version__,
        "run_id": record["run_id"], "dataset": record["dataset"], "model": record.get("model"),
        "data": {"kind": (record.get("data") or {}).get("kind")}, "label": record["label"],
        "twin_of": record.get("twin_of"), "assignment": dict(config.assignment), "angles": config.angles,
        "seed": config.seed, "config_hash": record.get("config_hash"), "n_params": d,
        "final_test_acc": (record.get("test_accs") or [None])[-1], "settings": spec.key(),
        "effective_dimension": {"sizes": sizes, "init": ed_init, "trained": ed_end,
                                "n_inputs": int(x.shape[0]), "seconds": ed_seconds},
        "gradient_variance": {"n_inits": spec.inits, "mean": grads.mean, "per_slot": _slot_variances(grads, slots),
                              "seconds": gv_seconds},
        "layers": layers,
        "seconds": time.perf_counter() - started,
    }


def _complete_records(out_dir) -> list[dict]:
    records = []
    for path in sorted((Path(out_dir) / "records").glob("*.json")):
        record = read_record(path)
        if record.get("status") == "complete" and "config" in record:
            records.append(record)
    return records


def diagnose_folder(out_dir, spec: DiagnoseSpec, *, run_ids=None, log=None, progress=None) -> list[dict]:
    """Diagnose every complete run in ``out_dir`` (or those in ``run_ids``); write ``OUT/diagnostics/``.

    Returns the results, one dict per run, in record order. Runs already diagnosed with the same
    settings are read back. ``progress(done, total)`` is called after each run when given.
    """
    spec = spec.validate()
    records = [r for r in _complete_records(out_dir) if run_ids is None or r["run_id"] in run_ids]
    results = []
    for i, record in enumerate(records):
        path = diagnostics_path(out_dir, record["run_id"])
        saved = read_record(path) if path.is_file() else None
        if saved is not None and saved.get("diagnostics_version") == DIAGNOSTICS_VERSION \
                and saved.get("settings") == spec.key():
            results.append(saved)
        elif record.get("config", {}).get("angles", "real") != "real":
            if log is not None:
                log(f"[{record['dataset']} {record['label']} seed {record['seed']}] skipped: complex angles make "
                    "no physical circuit")
        else:
            result = diagnose_run(record, out_dir, spec, log=log)
            atomic_write_json(path, result)
            results.append(result)
        if progress is not None:
            progress(i + 1, len(records))
    return results


def _probe_slot(kind: str):
    from qcreep.slots import ConvSlot, DenseSlot

    return ConvSlot(1, 1, 3) if kind == "conv" else DenseSlot(4, 2)


def _scan_point(name: str, kind: str, n_qubits: int, spec: DiagnoseSpec):
    """Gradient variance of layer ``name`` alone at ``n_qubits`` qubits, or None where it cannot be sized."""
    with torch.random.fork_rng(devices=[]):
        cls = type(create_layer(name, _probe_slot(kind), dtype=torch.float64))
    sized = cls.scan_slot(n_qubits) if hasattr(cls, "scan_slot") else None
    if sized is None:
        return None
    slot, options = sized
    if cls.circuit_parameters == ():
        return None  # a fixed circuit: no trainable parameter whose gradient could vanish
    names = list(cls.circuit_parameters or [])
    gen = torch.Generator().manual_seed(spec.seed * 7919 + n_qubits)
    if slot.kind == "conv":
        k = slot.kernel_size if isinstance(slot.kernel_size, int) else max(slot.kernel_size)
        x = torch.randn(8, slot.in_channels, k, k, generator=gen, dtype=torch.float64)
    else:
        x = torch.randn(8, slot.in_features, generator=gen, dtype=torch.float64)

    def factory():
        return create_layer(name, slot, dtype=torch.float64, **options)

    def first_output(layer, inputs):
        return layer(inputs).reshape(inputs.shape[0], -1)[:, 0].mean()

    result = gradient_variance(factory, x, spec.scan_inits, loss=first_output, generator=gen)
    chosen = [v for n, v in result.elementwise.items() if not names or n in names]
    count = sum(v.numel() for v in chosen)
    return float(sum(float(v.sum()) for v in chosen) / count)


def family_scan(out_dir, spec: DiagnoseSpec, families: list[tuple[str, str]], *, log=None) -> dict:
    """Gradient variance against qubits for each ``(layer name, slot kind)``; ``OUT/diagnostics/families.json``."""
    spec = spec.validate()
    path = Path(out_dir) / DIAGNOSTICS_DIR / FAMILIES_FILE
    saved = read_record(path) if path.is_file() else {}
    if saved.get("diagnostics_version") != DIAGNOSTICS_VERSION or saved.get("settings") != spec.scan_key():
        saved = {}
    scans = dict(saved.get("families") or {})
    for name, kind in families:
        if name in scans:
            continue
        started = time.perf_counter()
        points = [(n, _scan_point(name, kind, n, spec)) for n in spec.scan_qubits]
        points = [(n, v) for n, v in points if v is not None]
        entry = {"kind": kind, "qubits": [n for n, _ in points], "variance": [v for _, v in points]}
        if len(points) >= 3 and all(v > 0 for _, v in points):
            fit = fit_decay(entry["qubits"], entry["variance"])
            entry["decay"] = {"rate": fit.rate, "low": fit.low, "high": fit.high, "confidence": fit.confidence}
        entry["seconds"] = time.perf_counter() - started
        scans[name] = entry
        if log is not None:
            decay = entry.get("decay")
            fitted = (f"decay rate {decay['rate']:.3f} [{decay['low']:.3f}, {decay['high']:.3f}] per qubit"
                      if decay else "no fit (a fixed circuit, or its register size cannot be chosen)")
            log(f"[scan {name}] gradient variance at {entry['qubits']} qubits: {fitted} ({entry['seconds']:.1f}s)")
    result = {"diagnostics_version": DIAGNOSTICS_VERSION, "settings": spec.scan_key(), "families": scans}
    atomic_write_json(path, result)
    return result


def quantum_families(results: list[dict]) -> list[tuple[str, str]]:
    """The ``(layer name, slot kind)`` of every quantum layer the diagnosed runs use."""
    found = {}
    for res in results:
        for entry in (res.get("layers") or {}).values():
            name = entry.get("layer")
            if name and name not in found:
                for kind in ("conv", "dense"):
                    try:
                        if get_layer_entry(name, kind).quantum:
                            found[name] = kind
                            break
                    except QcreepError:
                        continue
    return sorted(found.items())


def normalised(values, d: int):
    """``d_eff / d`` for a list of values (None stays None)."""
    return None if values is None else [v / d for v in values]


__all__ = ["DIAGNOSTICS_DIR", "DiagnoseSpec", "diagnose_folder", "diagnose_run", "diagnostics_path",
           "family_scan", "normalised", "quantum_families"]
