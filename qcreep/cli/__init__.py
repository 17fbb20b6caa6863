"""The ``qcreep`` command: a thin shell over the library, one module per group of commands.

    qcreep run                      # the whole ladder on the embedded digits, then the table
    qcreep run --dataset fashion-mnist --levels 0 1 2 --seeds 5 --epochs 50 --out DIR
    qcreep run --assign conv1=flipped_quanv3x3,conv2=conv2d,head=data_reuploading
    qcreep run --executor ray --ray-address auto ...   # the runs as Ray tasks on a cluster
    qcreep list | qcreep summary --dataset mnist --level 2 [--resources] [--json] | qcreep report DIR
    qcreep evaluate DIR --shots 100 1000 --noise 0.001   # trained rungs with finite shots and noise
    qcreep export DIR/checkpoints/RUN.pt --layer head --format qasm3
    qcreep diagnose DIR                  # effective dimension, gradient variance, expressibility per rung

Modules: :mod:`qcreep.cli.common` (the one-line parser, argument types), :mod:`qcreep.cli.run`
(``run`` and its config files), :mod:`qcreep.cli.describe` (``list``, ``summary``),
:mod:`qcreep.cli.report` (``report``), :mod:`qcreep.cli.hardware` (``evaluate``, ``export``),
:mod:`qcreep.cli.diagnose` (``diagnose``).

Bad input (unknown names, bad numbers, missing or corrupt data, a broken config, a checkpoint of
another run) prints one line on stderr and exits with code 2. Heavy imports happen inside the
commands, so ``--help`` is fast.
"""

from __future__ import annotations

import sys

from qcreep.cli import describe, diagnose, hardware, report, run
from qcreep.cli.common import DEFAULT_OUT, Parser, UsageError
from qcreep.cli.run import effective_settings, load_config_file, run_settings

__all__ = ["DEFAULT_OUT", "build_parser", "effective_settings", "load_config_file", "main", "run_settings"]


def build_parser() -> Parser:
    parser = Parser(prog="qcreep", description="Swap classical layers for simulated quantum layers, "
                                               "one at a time, and measure what each swap changes.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", parser_class=Parser, required=True)
    run.add_parser(sub)
    describe.add_parsers(sub)
    report.add_parser(sub)
    hardware.add_parsers(sub)
    diagnose.add_parser(sub)
    return parser


def _version() -> str:
    from qcreep import __version__
    return f"qcreep {__version__}"


COMMANDS = {"run": run.cmd_run, "list": describe.cmd_list, "summary": describe.cmd_summary, "report": report.cmd_report,
            "evaluate": hardware.cmd_evaluate, "export": hardware.cmd_export, "diagnose": diagnose.cmd_diagnose}


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
