"""``qcreep evaluate`` and ``qcreep export``: trained rungs as a device would run them."""

from __future__ import annotations

import sys
from pathlib import Path

from qcreep.cli.common import log, nonnegative_int, positive_float, positive_int, probability

EXPORT_FORMATS = ("qasm3", "qiskit")


def add_hardware_options(parser, *, defaults: bool) -> None:
    """``--shots``, ``--noise``, ``--shot-seed`` (shared by ``run`` and ``evaluate``)."""
    from qcreep.evaluation import DEFAULT_NOISE, DEFAULT_SHOTS

    shots_default = f" (default {' '.join(map(str, DEFAULT_SHOTS))})" if defaults else ""
    noise_default = f" (default {' '.join(f'{p:g}' for p in DEFAULT_NOISE)})" if defaults else ""
    parser.add_argument("--shots", nargs="+", type=positive_int, metavar="S",
                        help="score each quantum rung with S shots per measured value" + shots_default)
    parser.add_argument("--noise", nargs="+", type=probability, metavar="P",
                        help="score each quantum rung with depolarising probability P per qubit and gate block"
                             + noise_default)
    parser.add_argument("--shot-seed", type=nonnegative_int, default=0, help="seed of the shot sampling (default 0)")


def add_parsers(sub) -> None:
    ev = sub.add_parser("evaluate", help="score trained quantum rungs with finite shots and gate noise; "
                                         "estimate their hardware resources")
    ev.add_argument("results_dir", help="a results folder written by qcreep run")
    add_hardware_options(ev, defaults=True)
    ev.add_argument("--max-test", type=positive_int, metavar="N", help="score the first N test images (default all)")
    ev.add_argument("--seeds", nargs="+", type=nonnegative_int, metavar="SEED",
                    help="score only the runs of these seeds (default every seed)")
    ev.add_argument("--batch-size", type=positive_int, default=250, help="images per batch (default 250)")
    ev.add_argument("--precision", type=positive_float, default=0.01, metavar="EPS",
                    help="standard error per output for the shots-per-image estimate (default 0.01)")
    ev.add_argument("--no-transpile", dest="transpile", action="store_false",
                    help="skip the transpiled gate counts (no Qiskit needed)")

    ex = sub.add_parser("export", help="a trained quantum layer's circuit for one input, as OpenQASM 3 or Qiskit")
    ex.add_argument("checkpoint", help="OUT/checkpoints/RUN.pt (or its record OUT/records/RUN.json)")
    ex.add_argument("--layer", required=True, metavar="SLOT", help="the quantum slot to export, e.g. head or conv1")
    ex.add_argument("--format", choices=EXPORT_FORMATS, default="qasm3",
                    help="qasm3 (text, default) or qiskit (a QPY file with --output, else a drawing)")
    ex.add_argument("--image", type=nonnegative_int, default=0, metavar="N",
                    help="the layer's input is that of test image N of the run's dataset (default 0)")
    ex.add_argument("--channel", type=nonnegative_int, nargs=2, default=(0, 0), metavar=("OUT", "IN"),
                    help="quanvolution: the channel pair (default 0 0)")
    ex.add_argument("--position", type=nonnegative_int, nargs=2, default=(0, 0), metavar=("ROW", "COL"),
                    help="quanvolution: the output position (default 0 0)")
    ex.add_argument("--measure", action="store_true", help="re-uploading head: add measurements of every qubit")
    ex.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")


def hardware_spec(args, *, max_test=None):
    from qcreep.evaluation import DEFAULT_NOISE, DEFAULT_SHOTS, HardwareSpec

    return HardwareSpec(shots=tuple(args.shots if args.shots is not None else DEFAULT_SHOTS),
                        noise=tuple(args.noise if args.noise is not None else DEFAULT_NOISE),
                        seed=args.shot_seed, max_test=max_test,
                        batch_size=getattr(args, "batch_size", 250) or 250,
                        precision=getattr(args, "precision", 0.01),
                        transpile=getattr(args, "transpile", True)).validate()


def print_hardware(results: list[dict]) -> None:
    """One line per evaluated run: exact, per shots, per noise accuracy."""
    for res in results:
        shots = ", ".join(f"S={e['shots']:g}: {e['test_acc']:.2%}" for e in res["shots"])
        noise = ", ".join(f"p={e['noise']:g}: {e['test_acc']:.2%}" for e in res["noise"])
        print(f"{res['dataset']} {res['label']} seed {res['seed']}: exact {res['exact']['test_acc']:.2%}"
              + (f"; {shots}" if shots else "") + (f"; {noise}" if noise else ""))


def cmd_evaluate(args) -> int:
    from qcreep.errors import QcreepError
    from qcreep.evaluation import evaluate_folder
    from qcreep.files import results_lock
    from qcreep.report import load_records, write_report

    spec = hardware_spec(args, max_test=args.max_test)
    records = load_records(args.results_dir)  # a missing or empty folder fails before anything is locked
    with results_lock(args.results_dir):
        run_ids = None
        if args.seeds is not None:
            run_ids = {r["run_id"] for r in records if r.get("seed") in set(args.seeds)}
        check_noise_support(args.results_dir, spec, run_ids)
        results = evaluate_folder(args.results_dir, spec, run_ids=run_ids, log=log)
        if not results:
            raise QcreepError(f"no complete quantum run with a checkpoint under {args.results_dir}; train one with "
                              "`qcreep run --levels 1 2 --out DIR` first")
        paths = write_report(args.results_dir)
    print_hardware(results)
    print(f"\nreport: {paths['report']}", file=sys.stderr)
    return 0


def execution_check(spec):
    """``check_model(config, model)`` for :func:`qcreep.sweep.preflight_sweep`: the rung can be scored with ``spec``.

    Run by ``qcreep run --shots/--noise`` before anything trains, with the largest noise level and shot
    count, so that a layer too large for the exact noisy simulation is refused in one line then, not
    after hours of training. Rungs with complex angles are skipped, as the evaluation skips them.
    """
    from qcreep.errors import QcreepError
    from qcreep.hardware.execution import Execution, executed

    execution = Execution(shots=max(spec.shots) if spec.shots else None,
                          noise=max(spec.noise) if spec.noise else 0.0, seed=spec.seed)

    def check(config, model) -> None:
        if config.angles != "real":
            return
        try:
            executed(model, execution)
        except QcreepError as err:
            raise QcreepError(f"{config.rung_label}: {err} (asked for by --shots/--noise; nothing was trained)") \
                from None

    return check


def check_noise_support(out_dir, spec, run_ids=None) -> None:
    """Before anything is evaluated: every noise level of ``spec`` can be simulated for every run to evaluate.

    A layer too large for the exact noisy simulation (e.g. an amplitude circuit on 14 qubits) raises
    its one-line :class:`QcreepError` here, naming the run, rather than after the exact and shot scores.
    """
    from qcreep.errors import QcreepError
    from qcreep.hardware.execution import Execution, executed
    from qcreep.trained import load_trained, trained_runs

    if not spec.noise:
        return
    for ckpt in trained_runs(out_dir):
        if run_ids is not None and ckpt.stem not in run_ids:
            continue
        run = load_trained(ckpt)
        if run.config.angles != "real":
            continue  # evaluate_folder skips it: no physical circuit
        try:
            executed(run.model, Execution(noise=max(spec.noise), seed=spec.seed))
        except QcreepError as err:
            raise QcreepError(f"run {run.config.run_id}: {err}") from None


def _layer_input(run, slot: str, image: int):
    """The input that ``slot`` receives for test image ``image`` of the run's dataset."""
    import torch

    from qcreep.config import DTYPES
    from qcreep.creep import quantum_layers
    from qcreep.errors import QcreepError
    from qcreep.train import prepare_data

    layers = quantum_layers(run.model)
    if slot not in layers:
        quantum = ", ".join(layers) or "none"
        raise QcreepError(f"slot '{slot}' of run {run.config.run_id} holds no quantum layer; quantum slots: {quantum}")
    test = prepare_data(run.config).test
    if image >= len(test.y):
        raise QcreepError(f"--image {image} is out of range: the run's test split has {len(test.y)} images "
                          f"(0 to {len(test.y) - 1})")
    captured = {}
    hook = layers[slot].register_forward_pre_hook(lambda mod, inputs: captured.__setitem__("x", inputs[0]))
    try:
        with torch.no_grad():
            run.model(test.x[image:image + 1].to(DTYPES[run.config.dtype]))
    finally:
        hook.remove()
    return layers[slot], captured["x"][0]


def cmd_export(args) -> int:
    from qcreep.errors import QcreepError
    from qcreep.files import atomic_save, atomic_write_text
    from qcreep.hardware import export
    from qcreep.trained import load_trained

    run = load_trained(args.checkpoint)
    layer, x = _layer_input(run, args.layer, args.image)
    options = {}
    if layer.__class__.__name__ == "FlippedQuanv3x3":
        options = {"out_channel": args.channel[0], "in_channel": args.channel[1], "position": tuple(args.position)}
        if args.measure:
            raise QcreepError("--measure applies to the re-uploading head; a quanvolution patch is measured in 5 "
                              "settings (see qcreep.hardware.export.measurement_circuits)")
    else:
        options = {"measure": args.measure}
    if args.format == "qasm3":
        if layer.__class__.__name__ == "DataReUploadingLinear" and layer.n_qubits >= 6:
            log(f"decomposing {2 * layer.n_reps} generic {2 ** layer.n_qubits}x{2 ** layer.n_qubits} unitaries into "
                "cx, rz, sx, x: this takes a while and the text is large")
        text = export.to_qasm3(layer, x, **options)
        if args.output:
            atomic_write_text(Path(args.output), text)
        else:
            sys.stdout.write(text)
    else:
        circuit = export.to_qiskit(layer, x, **options)
        if args.output:
            from qiskit import qpy

            atomic_save(Path(args.output), lambda tmp: _dump_qpy(qpy, circuit, tmp))
        else:
            print(circuit.draw(output="text", fold=-1))
    if layer.__class__.__name__ in ("FlippedQuanv3x3", "DataReUploadingLinear"):
        readout = _readout_text(export.readout_parameters(layer, **({"out_channel": args.channel[0]}
                                                                    if "out_channel" in options else {})))
    else:
        count = len(layer.circuits(x))
        readout = (f"the first of its {count} circuits for this input; the output follows from their measured "
                   f"values by {layer.__class__.__name__}.from_measurements")
    log(f"{run.config.run_id} {args.layer}: {layer.__class__.__name__} on test image {args.image}; "
        f"readout {readout}" + (f"; written {args.output}" if args.output else ""))
    return 0


def _dump_qpy(qpy, circuit, path) -> None:
    with open(path, "wb") as handle:
        qpy.dump(circuit, handle)


def _readout_text(readout: dict) -> str:
    if readout.get("kind") == "probabilities":
        return f"y_j = {readout['scale']:.6g} * p_j + bias_j for j < {readout['out_features']} (qcreep basis order)"
    return f"y = bias + (1/{readout['in_channels']}) sum_c <H_c>"
