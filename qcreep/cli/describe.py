"""``qcreep list`` and ``qcreep summary``: what qcreep offers, and what a rung's model holds."""

from __future__ import annotations

import json

from qcreep.cli.common import parse_level, positive_float, positive_int


def add_parsers(sub) -> None:
    lst = sub.add_parser("list", help="datasets, slots and registered layers")
    lst.add_argument("--json", action="store_true", help="machine-readable JSON")

    summ = sub.add_parser("summary", help="per-slot summary of a model: layers, shapes, parameter counts")
    summ.add_argument("--data", "--dataset", dest="dataset", default="digits", metavar="SPEC",
                      help="sets the input shape and classes: a built-in name (default digits), a .npz or .csv "
                           "file or an image folder")
    summ.add_argument("--model", default="hybridnet", metavar="SPEC",
                      help="hybridnet (default) or your own model, package.module:attr or path/file.py:attr: "
                           "shows its slots, their shapes, parameters and the qubits each quantum layer needs")
    summ.add_argument("--slots", nargs="+", metavar="PATTERN", help="with --model: the slots to consider")
    summ.add_argument("--test-data", metavar="FILE", help="a separate test file (as qcreep run)")
    summ.add_argument("--target", metavar="NAME|INDEX", help="the label column of a CSV (default: the last)")
    which = summ.add_mutually_exclusive_group()
    which.add_argument("--level", type=parse_level, help="replacement level 0, 1 or 2 (default 0)")
    which.add_argument("--assign", metavar="SPEC", help="an assignment, e.g. conv1=flipped_quanv3x3,head=linear")
    summ.add_argument("--twin", action="store_true", help="the classical twin of the rung (quantum layers replaced)")
    summ.add_argument("--n-reps", type=positive_int, default=10, help="re-uploads of the quantum head (default 10)")
    summ.add_argument("--n-qubits", type=positive_int, help="qubits of the quantum head (default: the minimum)")
    summ.add_argument("--angles", choices=["real", "complex"], default="real",
                      help="real (default) or complex; a complex angle counts as one parameter (two real numbers)")
    summ.add_argument("--output-scale", choices=["none", "learned"], default="learned",
                      help="readout of the re-uploading head (default learned, as qcreep run)")
    summ.add_argument("--bias-init", choices=["normal", "zero"], default="zero", help="default zero, as qcreep run")
    summ.add_argument("--resources", action="store_true",
                      help="hardware resources of the quantum layers: qubits, circuits, shots, gates, depth")
    summ.add_argument("--precision", type=positive_float, default=0.01, metavar="EPS",
                      help="with --resources: standard error per output for the shot counts (default 0.01)")
    summ.add_argument("--no-transpile", dest="transpile", action="store_false",
                      help="with --resources: skip the transpiled gate counts (no Qiskit needed)")
    summ.add_argument("--json", action="store_true", help="machine-readable JSON (includes total_params)")



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
    from qcreep.datasources import is_builtin
    from qcreep.models import (
        build_model,
        format_summary,
        hybridnet,
        level_assignment,
        parse_assignment,
        twin_assignment,
    )
    from qcreep.models import summary as model_summary

    if args.model != "hybridnet" or not is_builtin(args.dataset):
        return _summary_of_own_model(args)
    spec = get_spec(args.dataset)
    backbone = hybridnet(spec.input_shape, spec.num_classes)
    if args.assign:
        assignment = parse_assignment(args.assign, backbone)
    else:
        assignment = level_assignment(backbone, args.level if args.level is not None else 0)
    # the parameters are allocated as the model is built: refuse before that what cannot fit (a twin
    # is sized like its quantum rung, so the quantum assignment gives its count)
    from qcreep.errors import ConfigError
    from qcreep.guard import build_estimate, check_memory

    try:
        estimate = build_estimate(dataset=spec.name, assignment=assignment, n_reps=args.n_reps,
                                  n_qubits=args.n_qubits, angles=args.angles, input_shape=spec.input_shape,
                                  out_features=spec.num_classes)
    except ConfigError:
        estimate = None  # a setting the model cannot take: building it below names the slot and why
    if estimate is not None:
        check_memory(estimate)
    if args.twin:
        assignment = twin_assignment(backbone, assignment)
    torch.manual_seed(0)
    model = build_model(spec.input_shape, assignment=assignment, num_classes=spec.num_classes,
                        n_reps=args.n_reps, n_qubits=args.n_qubits, angles=args.angles,
                        output_scale=args.output_scale, bias_init=args.bias_init)
    summary = model_summary(model)
    summary.update(dataset=spec.name, angles=args.angles, output_scale=args.output_scale, bias_init=args.bias_init)
    if args.resources:
        from qcreep.hardware.resources import estimate_resources

        summary["resources"] = estimate_resources(model, spec.input_shape, precision=args.precision,
                                                  transpile=args.transpile)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(format_summary(summary))
        if args.resources:
            from qcreep.hardware.resources import format_resources

            print()
            print(format_resources(summary["resources"], title=f"hardware resources ({spec.name}, "
                                                                 f"{args.n_reps} re-uploads)"))
        if args.angles == "complex" and any(row["quantum"] for row in summary["slots"]):
            print("angles complex: each complex angle or bias counts as one parameter here; it holds two real "
                  "numbers, and the gates it makes are not unitary (the published code's mode)")
    return 0


def _summary_of_own_model(args) -> int:
    """``summary --model SPEC --data SPEC``: the slots found, and a rung's filled model when one is asked for."""
    import torch

    from qcreep.config import TrainConfig
    from qcreep.creep import format_slots
    from qcreep.datasources import info_for
    from qcreep.models import format_summary, level_assignment, parse_assignment, twin_assignment
    from qcreep.models import summary as model_summary
    from qcreep.train import build_run_model

    config = TrainConfig(dataset=args.dataset, model=args.model, level=None, slots=args.slots,
                         test_data=args.test_data, target=args.target, n_reps=args.n_reps, n_qubits=args.n_qubits,
                         angles=args.angles, output_scale=args.output_scale, bias_init=args.bias_init)
    backbone = config.backbone()
    info = info_for(config)
    found = backbone.found.summary()
    found.update(model=backbone.name, spec=args.model, data=info.to_dict(),
                 levels={str(k): list(v) for k, v in backbone.levels.items()})
    result = {"slots_found": found}
    rung = None
    if args.assign or args.level is not None:
        rung = parse_assignment(args.assign, backbone) if args.assign else level_assignment(backbone, args.level)
        if args.twin:
            rung = twin_assignment(backbone, rung)
        config = config.replace(assignment=rung)
        from qcreep.sweep import check_memory_of

        check_memory_of(config)
        with torch.random.fork_rng(devices=[]):
            model = build_run_model(config)
        result["rung"] = model_summary(model)
        if args.resources:
            from qcreep.hardware.resources import estimate_resources

            result["resources"] = estimate_resources(model, info.input_shape, precision=args.precision,
                                                     transpile=args.transpile)
    elif args.resources:
        from qcreep.errors import ConfigError

        raise ConfigError("--resources counts the quantum layers of a rung: add --level K or --assign SLOT=LAYER")
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    print(f"data {info.spec}: {info.kind}, input {'x'.join(map(str, info.input_shape))}, {info.num_classes} classes")
    print(format_slots(found))
    print("levels (quantum slots, cumulative): " +
          "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in found["levels"].items()))
    if rung is not None:
        print()
        print(format_summary(result["rung"]))
    if "resources" in result:
        from qcreep.hardware.resources import format_resources

        print()
        title = f"hardware resources ({info.spec}, {args.n_reps} re-uploads)"
        print(format_resources(result["resources"], title=title))
    return 0
