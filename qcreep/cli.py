"""The ``qcreep`` command: a thin shell over the library.

    qcreep run                      # the whole ladder on the embedded digits, then the table
    qcreep run --dataset fashion-mnist --levels 0 1 2 --seeds 5 --epochs 50 --out DIR
    qcreep run --assign conv1=flipped_quanv3x3,conv2=conv2d,head=data_reuploading
    qcreep list | qcreep summary --dataset mnist --level 2 [--json] | qcreep report DIR

Bad input (unknown names, bad numbers, missing or corrupt data, a broken config, a checkpoint of
another run) prints one line on stderr and exits with code 2. Heavy imports happen inside the
commands, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_OUT = "qcreep-results"
SWEEP_KEYS = {
    # config-file key: (type, is a list)
    "datasets": (str, True), "levels": (int, True), "assign": (str, True), "all_assignments": (bool, False),
    "seeds": (int, False), "angles": (str, True), "epochs": (int, False), "batch_size": (int, False),
    "lr": (float, False), "n_reps": (int, False), "n_qubits": (int, False), "max_train": (int, False),
    "max_test": (int, False), "eval_batch_size": (int, False), "dtype": (str, False), "device": (str, False),
    "data_dir": (str, False), "threads": (int, False), "val_fraction": (float, False), "split_seed": (int, False),
    "tune": (str, True), "tune_epochs": (int, False), "lr_grid": (float, True), "twins": (bool, False),
    "output_scale": (str, False), "bias_init": (str, False), "solver": (str, False), "seed_parallel": (int, False),
    "executor": (str, False), "ray_address": (str, False), "gpu_fraction": (float, False),
}
DEFAULTS = {"datasets": ["digits"], "levels": None, "assign": None, "all_assignments": False, "seeds": 6,
            "angles": ["real"], "tune": ["lr"], "tune_epochs": 10, "twins": True}
ALIASES = {"dataset": "datasets", "level": "levels", "assignments": "assign", "angle": "angles"}
# settings passed to every run's TrainConfig when given
RUN_FIELDS = ("epochs", "batch_size", "lr", "n_reps", "n_qubits", "max_train", "max_test", "eval_batch_size", "dtype",
              "device", "data_dir", "threads", "val_fraction", "split_seed", "output_scale", "bias_init", "solver")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _argument_type(convert, accept, expected: str):
    """An argparse type: ``convert`` the text, keep it if ``accept(value)``, else say what was expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'")
        return value
    return parse


_positive_int = _argument_type(int, lambda v: v >= 1, "a positive integer")
_nonnegative_int = _argument_type(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _argument_type(float, lambda v: 0 < v < float("inf"), "a positive number")
_fraction = _argument_type(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
_unit_fraction = _argument_type(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _level(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels are integers 0, 1, 2, got '{text}'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qcreep", description="Swap classical layers for simulated quantum layers, "
                                                "one at a time, and measure what each swap changes.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    run = sub.add_parser("run", help="tune and train a ladder of runs and print the results table",
                         description="Train every (dataset, rung, angle mode, seed). Each rung's learning rate is "
                                     "first tuned on a validation split with the same budget for every rung, and "
                                     "each quantum rung gets a classical twin. With no arguments: levels 0 1 2 and "
                                     "their twins on the embedded digits data, 5 seeds.")
    run.add_argument("--config", metavar="FILE", help="TOML or YAML file of settings; flags override it")
    run.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", metavar="NAME",
                     help="digits (default), mnist, fashion-mnist, cifar10")
    run.add_argument("--levels", "--level", dest="levels", nargs="+", type=_level, metavar="L",
                     help="replacement levels (default 0 1 2 unless --assign is given)")
    run.add_argument("--assign", nargs="+", metavar="SPEC",
                     help="explicit assignments, e.g. conv1=flipped_quanv3x3,conv2=conv2d,head=data_reuploading")
    run.add_argument("--all-assignments", action="store_true", default=None,
                     help="every classical/quantum assignment of the slots, all-classical to all-quantum")
    twins = run.add_mutually_exclusive_group()
    twins.add_argument("--twins", dest="twins", action="store_true", default=None,
                       help="add each quantum rung's classical twin (matched parameters and nonlinearity; default)")
    twins.add_argument("--no-twins", dest="twins", action="store_false", help="no classical twins")
    run.add_argument("--seeds", type=_positive_int, metavar="N",
                     help="seeds 0..N-1 (default 6: the fewest with which a paired test over seeds can resolve a "
                          "difference at the 5%% level)")
    run.add_argument("--angles", nargs="+", choices=["real", "complex"],
                     help="real (physical, default) and/or complex (the published code's non-unitary mode)")
    run.add_argument("--epochs", type=_positive_int, help="epochs per final run (default 50)")
    run.add_argument("--batch-size", type=_positive_int, help="default 200")
    run.add_argument("--lr", type=_positive_float,
                     help="fixed Adam learning rate (default: tuned; without tuning 5e-4, the published value)")
    tune = run.add_mutually_exclusive_group()
    tune.add_argument("--tune", nargs="+", metavar="SETTING",
                      help="settings tuned on the validation split with the same budget for every rung: lr "
                           "(default), output_scale, bias_init, batch_size, n_reps")
    tune.add_argument("--no-tune", dest="tune", action="store_const", const=[],
                      help="no tuning: use --lr (default 5e-4) for every rung")
    run.add_argument("--tune-epochs", type=_positive_int, metavar="N", help="epochs per tuning trial (default 10)")
    run.add_argument("--lr-grid", nargs="+", type=_positive_float, metavar="LR",
                     help="learning rates tried (default 1e-5 3e-5 ... 3e-2 1e-1, a half-decade grid)")
    run.add_argument("--val-fraction", type=_fraction, metavar="F",
                     help="fraction of the training split held out for validation (default 0.1; 0: none)")
    run.add_argument("--split-seed", type=_nonnegative_int, help="seed of the validation split (default 0)")
    run.add_argument("--output-scale", choices=["none", "learned"],
                     help="readout of the re-uploading head and its twin: learned (default) multiplies the "
                          "measured probabilities by a trainable scale; none is the published readout")
    run.add_argument("--bias-init", choices=["normal", "zero"],
                     help="initial biases of the re-uploading head and its twin: zero (default) or normal "
                          "(the published N(0, 1))")
    run.add_argument("--n-reps", type=_positive_int, help="re-uploads of the quantum head (default 10)")
    run.add_argument("--n-qubits", type=_positive_int, help="qubits of the quantum head (default: the minimum)")
    run.add_argument("--solver", choices=["auto", "eigh", "expm"],
                     help="how unitaries are formed: eigh (eigendecompositions), expm (matrix products only), "
                          "auto (default: the faster for the device)")
    run.add_argument("--seed-parallel", type=_positive_int, metavar="K",
                     help="train K seeds of a rung at once as one stacked model (default: all seeds, up to 5, "
                          "on a GPU; 1 on a CPU)")
    run.add_argument("--executor", choices=["local", "ray"],
                     help="local (default): runs train in this process; ray: each run is a Ray task, on this "
                          "machine or a cluster (pip install \"qcreep[ray]\")")
    run.add_argument("--ray-address", metavar="ADDR",
                     help="with --executor ray: local (default, starts Ray on this machine), auto (joins the "
                          "cluster running here) or HOST:PORT")
    run.add_argument("--gpu-fraction", type=_unit_fraction, metavar="F",
                     help="with --executor ray and --device cuda: share of a GPU each run declares (default 0.25)")
    run.add_argument("--max-train", type=_positive_int, metavar="N", help="train on the first N examples")
    run.add_argument("--max-test", type=_positive_int, metavar="N", help="test on the first N examples")
    run.add_argument("--eval-batch-size", type=_positive_int, help="default 1000")
    run.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    run.add_argument("--device", help="cpu (default), cuda or cuda:N")
    run.add_argument("--data-dir", help="dataset folder (else $QCREEP_DATA, else a user cache folder)")
    run.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    run.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default ./{DEFAULT_OUT})")
    run.add_argument("--resume", action="store_true", help="continue unfinished runs from their checkpoints")
    bar = run.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress bars")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars")

    lst = sub.add_parser("list", help="datasets, slots and registered layers")
    lst.add_argument("--json", action="store_true", help="machine-readable JSON")

    summ = sub.add_parser("summary", help="per-slot summary of a model: layers, shapes, parameter counts")
    summ.add_argument("--dataset", default="digits", help="sets the input shape and classes (default digits)")
    which = summ.add_mutually_exclusive_group()
    which.add_argument("--level", type=_level, help="replacement level 0, 1 or 2 (default 0)")
    which.add_argument("--assign", metavar="SPEC", help="an assignment, e.g. conv1=flipped_quanv3x3,head=linear")
    summ.add_argument("--twin", action="store_true", help="the classical twin of the rung (quantum layers replaced)")
    summ.add_argument("--n-reps", type=_positive_int, default=10, help="re-uploads of the quantum head (default 10)")
    summ.add_argument("--n-qubits", type=_positive_int, help="qubits of the quantum head (default: the minimum)")
    summ.add_argument("--angles", choices=["real", "complex"], default="real",
                      help="real (default) or complex; a complex angle counts as one parameter (two real numbers)")
    summ.add_argument("--output-scale", choices=["none", "learned"], default="learned",
                      help="readout of the re-uploading head (default learned, as qcreep run)")
    summ.add_argument("--bias-init", choices=["normal", "zero"], default="zero", help="default zero, as qcreep run")
    summ.add_argument("--json", action="store_true", help="machine-readable JSON (includes total_params)")

    rep = sub.add_parser("report", help="Markdown table, CSV and plots from run records")
    rep.add_argument("results_dir", help="a results folder written by qcreep run (its records/ folder)")
    rep.add_argument("--out", help="where to write report.md, summary.csv and plots (default RESULTS_DIR)")
    return parser


def _version() -> str:
    from qcreep import __version__
    return f"qcreep {__version__}"


# ------------------------------------------------------------------------------------------------
# config files


def load_config_file(path) -> dict:
    """Settings from a TOML or YAML file, checked key by key."""
    from qcreep.errors import ConfigError

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    try:
        if path.suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    except ConfigError:
        raise
    except Exception as err:
        message = " ".join(str(err).split())
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {message}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings, got {type(data).__name__}")
    return {_config_key(k, path): _config_value(_config_key(k, path), v, path) for k, v in data.items()}


def _config_key(key, path):
    from qcreep.errors import ConfigError

    key = ALIASES.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
    if key not in SWEEP_KEYS:
        raise ConfigError(f"unknown key '{key}' in {path}; valid keys: {', '.join(sorted(SWEEP_KEYS))}")
    return key


def _config_value(key, value, path):
    from qcreep.errors import ConfigError

    kind, is_list = SWEEP_KEYS[key]
    if not is_list and isinstance(value, list):
        raise ConfigError(f"key '{key}' in {path} takes one {kind.__name__}, got a list")
    items = value if isinstance(value, list) else [value]
    checked = []
    for item in items:
        if kind is float and isinstance(item, str):
            try:  # YAML 1.1 reads 5e-4 (no dot) as a string
                item = float(item)
            except ValueError:
                pass
        ok = isinstance(item, kind) and not (kind is not bool and isinstance(item, bool))
        if kind is float and isinstance(item, int) and not isinstance(item, bool):
            ok, item = True, float(item)
        if not ok:
            raise ConfigError(f"key '{key}' in {path} takes {kind.__name__} values, got {item!r}")
        checked.append(item)
    return checked if is_list else checked[0]


def effective_settings(args, file_settings: dict | None = None) -> dict:
    """Defaults, then the config file (``file_settings`` if already read), then flags."""
    settings = dict(DEFAULTS)
    if args.config:
        settings.update(file_settings if file_settings is not None else load_config_file(args.config))
    for key in SWEEP_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    if not settings.get("levels") and not settings.get("assign") and not settings.get("all_assignments"):
        settings["levels"] = [0, 1, 2]
    return settings


def _save_settings(out_dir: Path, settings: dict) -> Path:
    """Write the settings next to the results without replacing a different earlier file."""
    import yaml

    from qcreep.files import atomic_write_bytes

    text = yaml.safe_dump({k: v for k, v in settings.items() if v is not None}, sort_keys=True)
    for i in range(1, 1000):
        path = out_dir / ("config.yaml" if i == 1 else f"config-{i}.yaml")
        if not path.exists():
            atomic_write_bytes(path, text.encode())
            return path
        if path.read_text() == text:
            return path
    from qcreep.errors import OutputError
    raise OutputError(f"{out_dir} already holds 999 config files of different settings; use another --out")


# ------------------------------------------------------------------------------------------------
# commands


def run_settings(args) -> dict:
    """The effective settings of ``qcreep run``, with the tuning rule applied.

    The learning rate is tuned unless it is fixed: ``--lr`` (or ``lr`` in a config file) without
    ``--tune`` fixes it, and ``--no-tune`` uses the given or published learning rate.
    """
    file_settings = load_config_file(args.config) if args.config else {}
    settings = effective_settings(args, file_settings)
    explicit_tune = args.tune is not None or "tune" in file_settings
    if settings.get("lr") is not None and not explicit_tune:
        settings["tune"] = [k for k in settings["tune"] if k != "lr"]
    return settings


def cmd_run(args) -> int:
    from qcreep.data import get_spec
    from qcreep.executors import make_executor
    from qcreep.files import ensure_dir, results_lock
    from qcreep.models import all_assignments, assignment_label, hybridnet
    from qcreep.report import load_records, markdown_table, summarize, write_report
    from qcreep.sweep import default_seed_parallel, plan, preflight_sweep, run_sweep
    from qcreep.tuning import TuningSpec, trial_configs, tuning_dir

    settings = run_settings(args)
    assignments = list(settings.get("assign") or [])
    if settings.get("all_assignments"):
        for dataset in settings["datasets"]:
            spec = get_spec(dataset)
            assignments += [assignment_label(a) for a in all_assignments(hybridnet(spec.input_shape))]
    fields = {k: settings[k] for k in RUN_FIELDS if settings.get(k) is not None}
    configs = plan(settings["datasets"], levels=settings.get("levels"), assignments=assignments,
                   seeds=range(settings["seeds"]), angles=settings["angles"], twins=bool(settings.get("twins")),
                   **fields)
    tuning = None
    if settings.get("tune"):
        tuning = TuningSpec.default(settings["tune"], epochs=settings["tune_epochs"], lr_grid=settings.get("lr_grid"))
    executor_name = settings.get("executor") or "local"
    seed_parallel = settings.get("seed_parallel") or (
        default_seed_parallel(configs[0].device, settings["seeds"]) if executor_name == "local" else 1)
    executor = make_executor(executor_name, seed_parallel=seed_parallel, ray_address=settings.get("ray_address"),
                             gpu_fraction=settings.get("gpu_fraction"))
    out_dir = Path(args.out)
    # every check before anything is written: data, every rung's model and memory, existing records
    data = preflight_sweep(configs, out_dir, resume=args.resume, check_records=tuning is None)
    if tuning is not None:
        from qcreep.sweep import rung_groups
        trials = [t for g in rung_groups(configs, tuple(tuning.grid)) for t in trial_configs(g[0], tuning)]
        preflight_sweep(trials, tuning_dir(out_dir), resume=True, data=data)
    ensure_dir(out_dir)
    with results_lock(out_dir), executor:
        saved = _save_settings(out_dir, settings)
        if sys.stderr.isatty():
            print(f"qcreep: {len(configs)} run(s) -> {out_dir} (settings in {saved.name})", file=sys.stderr)
        run_sweep(configs, out_dir, executor=executor, tuning=tuning, resume=args.resume, progress=args.progress,
                  log=_log, data=data)
        paths = write_report(out_dir)
    print(markdown_table(summarize(load_records(out_dir))))
    print(f"\nreport: {paths['report']}", file=sys.stderr)
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_list(args) -> int:
    from qcreep.data import describe_datasets
    from qcreep.layers import layer_entries
    from qcreep.models import hybridnet

    backbone = hybridnet()
    info = {
        "datasets": describe_datasets(),
        "slots": [{"slot": s.name, "kind": s.slot.kind, "contract": s.slot.describe(), "classical": s.classical,
                   "quantum": s.quantum} for s in backbone.slots],
        "levels": {str(k): list(v) for k, v in backbone.levels.items()},
        "layers": [{"name": e.name, "slot_kind": e.slot_kind, "quantum": e.quantum, "twin_of": e.twin_of,
                    "description": e.description} for e in layer_entries()],
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print("datasets:")
    for d in info["datasets"]:
        shape = "x".join(map(str, d["input_shape"]))
        print(f"  {d['name']:<14} input {shape:<8} {d['description']}")
    print("slots of hybridnet (shown for 1x32x32 inputs):")
    for s in info["slots"]:
        print(f"  {s['slot']:<6} {s['contract']}  [classical {s['classical']}, quantum {s['quantum']}]")
    print("replacement levels (quantum slots): " +
          "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in info["levels"].items()))
    print("registered layers:")
    for e in info["layers"]:
        kind = "quantum" if e["quantum"] else ("twin" if e["twin_of"] else "classical")
        print(f"  {e['slot_kind']:<8} {e['name']:<18} {kind:<9} {e['description']}")
    return 0


def cmd_summary(args) -> int:
    import torch

    from qcreep.data import get_spec
    from qcreep.models import (
        build_model,
        format_summary,
        hybridnet,
        level_assignment,
        parse_assignment,
        twin_assignment,
    )

    spec = get_spec(args.dataset)
    backbone = hybridnet(spec.input_shape, spec.num_classes)
    if args.assign:
        assignment = parse_assignment(args.assign, backbone)
    else:
        assignment = level_assignment(backbone, args.level if args.level is not None else 0)
    if args.twin:
        assignment = twin_assignment(backbone, assignment)
    torch.manual_seed(0)
    model = build_model(spec.input_shape, assignment=assignment, num_classes=spec.num_classes,
                        n_reps=args.n_reps, n_qubits=args.n_qubits, angles=args.angles,
                        output_scale=args.output_scale, bias_init=args.bias_init)
    summary = model.summary()
    summary.update(dataset=spec.name, angles=args.angles, output_scale=args.output_scale, bias_init=args.bias_init)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(format_summary(summary))
        if args.angles == "complex" and any(row["quantum"] for row in summary["slots"]):
            print("angles complex: each complex angle or bias counts as one parameter here; it holds two real "
                  "numbers, and the gates it makes are not unitary (the published code's mode)")
    return 0


def cmd_report(args) -> int:
    from qcreep.files import results_lock
    from qcreep.report import load_records, markdown_table, summarize, write_report

    records = load_records(args.results_dir)  # a missing or empty folder fails before anything is locked
    with results_lock(args.out or args.results_dir):
        paths = write_report(args.results_dir, args.out)
    print(markdown_table(summarize(records)))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "summary": cmd_summary, "report": cmd_report}


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as err:
        print(f"qcreep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qcreep: interrupted; finished epochs are checkpointed, continue with --resume", file=sys.stderr)
        return 130
    except Exception as err:
        from qcreep.errors import QcreepError

        if isinstance(err, QcreepError):
            print(f"qcreep: error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        if isinstance(err, OSError):  # a write that did not go through qcreep.files
            from qcreep.files import describe_os_error
            where = f" {err.filename}" if err.filename else ""
            print(f"qcreep: error: cannot write{where}: {describe_os_error(err)}; choose another --out or free "
                  "the space", file=sys.stderr)
            return 2
        if isinstance(err, MemoryError) or "out of memory" in str(err).lower() or "not enough memory" in str(err):
            print("qcreep: error: out of memory; lower --batch-size, --n-reps or --n-qubits, or use a machine with "
                  "more memory", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
