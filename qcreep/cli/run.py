"""``qcreep run``: plan, tune and train a ladder of runs, then print the table.

Settings come from defaults, then a TOML or YAML config file (``--config``), then flags. Every check
(data, each rung's model and memory, existing records) runs before anything is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from qcreep.cli.common import (
    DEFAULT_OUT,
    fraction,
    log,
    nonnegative_int,
    parse_level,
    positive_float,
    positive_int,
    probability,
    unit_fraction,
)
from qcreep.cli.diagnose import add_diagnose_options, diagnose_spec, run_diagnostics

SWEEP_KEYS = {
    # config-file key: (type, is a list)
    "datasets": (str, True), "levels": (int, True), "assign": (str, True), "all_assignments": (bool, False),
    "seeds": (int, False), "angles": (str, True), "epochs": (int, False), "batch_size": (int, False),
    "lr": (float, False), "n_reps": (int, False), "n_qubits": (int, False), "max_train": (int, False),
    "max_test": (int, False), "eval_batch_size": (int, False), "dtype": (str, False), "device": (str, False),
    "data_dir": (str, False), "threads": (int, False), "val_fraction": (float, False), "split_seed": (int, False),
    "tune": (str, True), "tune_epochs": (int, False), "tune_seeds": (int, False), "lr_grid": (float, True),
    "twins": (bool, False),
    "output_scale": (str, False), "bias_init": (str, False), "solver": (str, False), "seed_parallel": (int, False),
    "executor": (str, False), "ray_address": (str, False), "gpu_fraction": (float, False),
    "shots": (int, True), "noise": (float, True), "shot_seed": (int, False), "diagnose": (bool, False),
    "model": (str, False), "test_data": (str, False), "target": (str, False), "test_fraction": (float, False),
    "standardize": (bool, False), "slots": (str, True), "rungs": (str, False), "classes": (str, True),
    "quantum": (str, True), "structure": (str, True),
}
RUNGS = ("cumulative", "single", "all")
DEFAULTS = {"datasets": ["digits"], "levels": None, "assign": None, "all_assignments": False, "seeds": 6,
            "angles": ["real"], "tune": ["lr"], "tune_epochs": 10, "tune_seeds": 1, "twins": True}
DEFAULT_LEVELS = (0, 1, 2)  # when neither levels nor assignments are given
DEFAULT_EPOCHS = 50  # TrainConfig.epochs (not imported here: --help stays fast); a test keeps them equal
ALIASES = {"dataset": "datasets", "data": "datasets", "level": "levels", "assignments": "assign", "angle": "angles"}
# settings passed to every run's TrainConfig when given
RUN_FIELDS = ("epochs", "batch_size", "lr", "n_reps", "n_qubits", "max_train", "max_test", "eval_batch_size", "dtype",
              "device", "data_dir", "threads", "val_fraction", "split_seed", "output_scale", "bias_init", "solver",
              "model", "test_data", "target", "test_fraction", "standardize", "slots", "classes")




def add_parser(sub) -> None:
    run = sub.add_parser("run", help="tune and train a ladder of runs and print the results table",
                         description="Train every (dataset, rung, angle mode, seed). Each rung's learning rate is "
                                     "first tuned on a validation split with the same budget for every rung, and "
                                     "each quantum rung gets a classical twin. With no arguments: levels "
                                     f"{' '.join(map(str, DEFAULT_LEVELS))} and their twins on the embedded "
                                     f"{DEFAULTS['datasets'][0]} data, {DEFAULTS['seeds']} seeds, "
                                     f"{DEFAULT_EPOCHS} epochs.")
    run.add_argument("--config", metavar="FILE", help="TOML or YAML file of settings; flags override it")
    run.add_argument("--data", "--dataset", "--datasets", dest="datasets", nargs="+", metavar="SPEC",
                     help="built-in digits (default), mnist, fashion-mnist, cifar10; or a .npz file (x_train, y_train, "
                          "x_test, y_test, or x, y), a .csv file (label in the last column unless --target) or an "
                          "image folder (CLASS/IMAGE.png, with train/ and test/ or split)")
    run.add_argument("--model", metavar="SPEC",
                     help="hybridnet (default, the paper's network) or your own: package.module:attr or "
                          "path/file.py:attr, an nn.Module class or factory taking input_shape and/or num_classes")
    run.add_argument("--slots", nargs="+", metavar="PATTERN",
                     help="which layers of --model may turn quantum: full names (features.0), suffixes (fc1), "
                          "regular expressions or types (Linear, Conv2d); default all")
    run.add_argument("--rungs", choices=RUNGS,
                     help="the ladder over the slots: cumulative (rung k has the first k slots quantum, in forward "
                          "order; the default for your own model), single (each slot alone) or all (every subset)")
    run.add_argument("--test-data", metavar="FILE", help="a separate test file or folder (the --data file then trains)")
    run.add_argument("--target", metavar="NAME|INDEX", help="the label column of a CSV (default: the last)")
    run.add_argument("--test-fraction", type=fraction, metavar="F",
                     help="stratified test share of data that has no test split (default 0.2)")
    run.add_argument("--classes", nargs="+", metavar="LABEL",
                     help="keep these classes only, relabelled 0..K-1 in class order: labels or ranges (0-7, "
                          "0,2,5) or class names (default: all)")
    run.add_argument("--no-standardize", dest="standardize", action="store_false", default=None,
                     help="keep tabular features as they are (default: standardised with the fitted part's "
                          "mean and standard deviation)")
    run.add_argument("--levels", "--level", dest="levels", nargs="+", type=parse_level, metavar="L",
                     help="replacement levels (default 0 1 2 unless --assign is given)")
    run.add_argument("--assign", nargs="+", metavar="SPEC",
                     help="explicit assignments, e.g. conv1=flipped_quanv3x3,conv2=conv2d,head=data_reuploading")
    run.add_argument("--quantum", nargs="+", metavar="KIND=FAMILY",
                     help="which registered quantum layers fill the quantum slots, by slot kind or slot name: "
                          "e.g. dense=dressed_circuit,conv=quanvolution (default: paper, the paper's pair). Several "
                          "choices plan every rung once per choice, each with its twin: one ladder comparing families "
                          "(qcreep list shows the layers)")
    run.add_argument("--structure", nargs="+", metavar="KEY=N",
                     help="structural options of the quantum families and their twins: layers=N (amplitude_circuit, "
                          "angle_reuploading, quanvolution), depth=N (dressed_circuit, trainable_quanvolution), "
                          "width=N (dressed_circuit, angle_reuploading); default: each family's own")
    run.add_argument("--all-assignments", action="store_true", default=None,
                     help="every classical/quantum assignment of the slots, all-classical to all-quantum")
    twins = run.add_mutually_exclusive_group()
    twins.add_argument("--twins", dest="twins", action="store_true", default=None,
                       help="add each quantum rung's classical twin (matched parameters and nonlinearity; default)")
    twins.add_argument("--no-twins", dest="twins", action="store_false", help="no classical twins")
    run.add_argument("--seeds", type=positive_int, metavar="N",
                     help=f"seeds 0..N-1 (default {DEFAULTS['seeds']}: the fewest with which a paired test over seeds "
                          "can resolve a difference at the 5%% level)")
    run.add_argument("--angles", nargs="+", choices=["real", "complex"],
                     help="real (physical, default) and/or complex (the published code's non-unitary mode)")
    run.add_argument("--epochs", type=positive_int, help=f"epochs per final run (default {DEFAULT_EPOCHS})")
    run.add_argument("--batch-size", type=positive_int, help="default 200")
    run.add_argument("--lr", type=positive_float,
                     help="fixed Adam learning rate (default: tuned; without tuning 5e-4, the published value)")
    tune = run.add_mutually_exclusive_group()
    tune.add_argument("--tune", nargs="+", metavar="SETTING",
                      help="settings tuned on the validation split with the same budget for every rung: lr "
                           "(default), output_scale, bias_init, batch_size, n_reps; the families' structure layers, "
                           "depth, width (tuned for quantum rungs; each twin takes its rung's choice)")
    tune.add_argument("--no-tune", dest="tune", action="store_const", const=[],
                      help="no tuning: use --lr (default 5e-4) for every rung")
    run.add_argument("--tune-epochs", type=positive_int, metavar="N",
                     help=f"epochs per tuning trial (default {DEFAULTS['tune_epochs']})")
    run.add_argument("--tune-seeds", type=positive_int, metavar="K",
                     help="train each tuning trial from seeds 0..K-1 and choose by the mean validation score "
                          f"(default {DEFAULTS['tune_seeds']})")
    run.add_argument("--lr-grid", nargs="+", type=positive_float, metavar="LR",
                     help="learning rates tried (default 1e-5 3e-5 ... 3e-2 1e-1, a half-decade grid)")
    run.add_argument("--val-fraction", type=fraction, metavar="F",
                     help="fraction of the training split held out for validation (default 0.1; 0: none)")
    run.add_argument("--split-seed", type=nonnegative_int, help="seed of the validation split (default 0)")
    run.add_argument("--output-scale", choices=["none", "learned"],
                     help="readout of the re-uploading head and its twin: learned (default) multiplies the "
                          "measured probabilities by a trainable scale; none is the published readout")
    run.add_argument("--bias-init", choices=["normal", "zero"],
                     help="initial biases of the re-uploading head and its twin: zero (default) or normal "
                          "(the published N(0, 1))")
    run.add_argument("--n-reps", type=positive_int, help="re-uploads of the quantum head (default 10)")
    run.add_argument("--n-qubits", type=positive_int, help="qubits of the quantum head (default: the minimum)")
    run.add_argument("--solver", choices=["auto", "eigh", "expm"],
                     help="how unitaries are formed: eigh (eigendecompositions), expm (matrix products only), "
                          "auto (default), the faster for the device")
    run.add_argument("--seed-parallel", type=positive_int, metavar="K",
                     help="train K seeds of a rung at once as one stacked model (default: all seeds, up to 5, "
                          "on a GPU; 1 on a CPU)")
    run.add_argument("--executor", choices=["local", "ray"],
                     help="local (default): runs train in this process; ray: each run is a Ray task, on this "
                          "machine or a cluster (pip install \"qcreep[ray]\")")
    run.add_argument("--ray-address", metavar="ADDR",
                     help="with --executor ray: local (default, starts Ray on this machine), auto (joins the "
                          "cluster running here) or HOST:PORT")
    run.add_argument("--gpu-fraction", type=unit_fraction, metavar="F",
                     help="with --executor ray and --device cuda: share of a GPU each run declares (default 0.25)")
    run.add_argument("--max-train", type=positive_int, metavar="N", help="train on the first N examples")
    run.add_argument("--max-test", type=positive_int, metavar="N", help="test on the first N examples")
    run.add_argument("--eval-batch-size", type=positive_int, help="default 1000")
    run.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    run.add_argument("--device", help="cpu (default), cuda or cuda:N")
    run.add_argument("--data-dir", help="dataset folder (else $QCREEP_DATA, else a user cache folder)")
    run.add_argument("--threads", type=positive_int, help="torch CPU threads")
    hw = run.add_argument_group("hardware", "after training, score each quantum run with finite shots and gate "
                                            "noise (as qcreep evaluate; results in OUT/hardware and the report)")
    hw.add_argument("--shots", nargs="+", type=positive_int, metavar="S", help="shots per measured value")
    hw.add_argument("--noise", nargs="+", type=probability, metavar="P",
                    help="depolarising probability per qubit and gate block")
    hw.add_argument("--shot-seed", type=nonnegative_int, help="seed of the shot sampling (default 0)")
    run.add_argument("--diagnose", action="store_true", default=None,
                     help="after training, diagnose every run (as qcreep diagnose; results in OUT/diagnostics and "
                          "the report)")
    add_diagnose_options(run)
    run.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default ./{DEFAULT_OUT})")
    run.add_argument("--resume", action="store_true", help="continue unfinished runs from their checkpoints")
    bar = run.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress bars")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars")



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
    if not settings.get("levels") and not settings.get("assign") and not settings.get("all_assignments") \
            and not settings.get("rungs"):
        if settings.get("model") in (None, "hybridnet"):
            settings["levels"] = list(DEFAULT_LEVELS)
        else:
            settings["rungs"] = "cumulative"
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
# the command


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
    given_seeds = args.tune_seeds if args.tune_seeds is not None else file_settings.get("tune_seeds")
    if given_seeds is not None and given_seeds != 1 and not settings.get("tune"):
        from qcreep.errors import ConfigError
        raise ConfigError(f"tune_seeds {given_seeds} needs tuning, which is off (--no-tune, or --lr without --tune); "
                          "drop --tune-seeds, or tune (e.g. --tune lr)")
    return settings


def parse_structure(items) -> dict:
    """``["depth=4", "layers=2"]`` (or ``"depth=4,layers=2"``) -> ``{"depth": 4, "layers": 2}``."""
    from qcreep.errors import ConfigError

    if isinstance(items, dict):
        return items
    out = {}
    for item in [items] if isinstance(items, str) else items:
        for part in filter(None, (p.strip() for p in str(item).split(","))):
            key, eq, value = (x.strip() for x in part.partition("="))
            if not eq or not value.lstrip("-").isdigit():
                raise ConfigError(f"a structural option looks like KEY=N (e.g. depth=4), got '{part}'")
            out[key] = int(value)
    return out


def cmd_run(args) -> int:
    from qcreep.config import TrainConfig
    from qcreep.executors import make_executor
    from qcreep.files import check_not_in_use, ensure_dir, results_lock
    from qcreep.models import assignment_label, rung_assignments
    from qcreep.report import load_records, markdown_table, summarize, write_report
    from qcreep.sweep import default_seed_parallel, plan, preflight_sweep, run_sweep
    from qcreep.tuning import TuningSpec, check_tunable, trial_configs, tuning_dir

    settings = run_settings(args)
    fields = {k: settings[k] for k in RUN_FIELDS if settings.get(k) is not None}
    if settings.get("structure"):
        fields["structure"] = parse_structure(settings["structure"])
    assignments = list(settings.get("assign") or [])
    rungs = "all" if settings.get("all_assignments") else settings.get("rungs")
    if rungs:
        for dataset in settings["datasets"]:
            backbone = TrainConfig(dataset=dataset, level=None, **fields).backbone()
            assignments += [assignment_label(a) for a in rung_assignments(backbone, rungs)]
    configs = plan(settings["datasets"], levels=settings.get("levels"), assignments=assignments,
                   seeds=range(settings["seeds"]), angles=settings["angles"], twins=bool(settings.get("twins")),
                   quantum=settings.get("quantum"), **fields)
    tuning = None
    if settings.get("tune"):
        tuning = TuningSpec.default(settings["tune"], epochs=settings["tune_epochs"], lr_grid=settings.get("lr_grid"),
                                    seeds=settings["tune_seeds"])
        check_tunable(configs)
    executor_name = settings.get("executor") or "local"
    seed_parallel = settings.get("seed_parallel") or (
        default_seed_parallel(configs[0].device, settings["seeds"]) if executor_name == "local" else 1)
    executor = make_executor(executor_name, seed_parallel=seed_parallel, ray_address=settings.get("ray_address"),
                             gpu_fraction=settings.get("gpu_fraction"))
    hardware = None
    if settings.get("shots") or settings.get("noise"):
        from qcreep.evaluation import HardwareSpec

        hardware = HardwareSpec(shots=tuple(settings.get("shots") or ()), noise=tuple(settings.get("noise") or ()),
                                seed=settings.get("shot_seed") or 0).validate()
    diagnostics = diagnose_spec(args) if settings.get("diagnose") else None
    out_dir = Path(args.out)
    # every check before anything is written: another writer in the folder (first, since the advice of
    # the other checks about its files would be wrong then), data, every rung's model and memory,
    # existing records
    check_not_in_use(out_dir)
    check_model = None
    if hardware is not None:
        from qcreep.cli.hardware import execution_check

        check_model = execution_check(hardware)
    data = preflight_sweep(configs, out_dir, resume=args.resume, check_records=tuning is None,
                           check_model=check_model)
    if tuning is not None:
        from qcreep.sweep import rung_groups
        trials = [t for g in rung_groups(configs, tuple(tuning.grid)) for t in trial_configs(g[0], tuning)]
        preflight_sweep(trials, tuning_dir(out_dir), resume=True, data=data)
    ensure_dir(out_dir)
    with results_lock(out_dir), executor:
        saved = _save_settings(out_dir, settings)
        if sys.stderr.isatty():
            print(f"qcreep: {len(configs)} run(s) -> {out_dir} (settings in {saved.name})", file=sys.stderr)
        records = run_sweep(configs, out_dir, executor=executor, tuning=tuning, resume=args.resume,
                            progress=args.progress, log=log, data=data)
        if hardware is not None:
            from qcreep.evaluation import evaluate_folder

            evaluate_folder(out_dir, hardware, run_ids={r["run_id"] for r in records if r is not None}, log=log)
        if diagnostics is not None:
            run_diagnostics(out_dir, diagnostics, run_ids={r["run_id"] for r in records if r is not None},
                            scan=args.scan, progress=args.progress)
        paths = write_report(out_dir)
    print(markdown_table(summarize(load_records(out_dir))))
    print(f"\nreport: {paths['report']}", file=sys.stderr)
    return 0


