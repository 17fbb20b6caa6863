"""``qcreep diagnose``: why a rung wins or loses (effective dimension, gradient variance, expressibility,
entangling capability) for every run of a finished ladder; also what ``qcreep run --diagnose`` calls."""

from __future__ import annotations

import sys

from qcreep.cli.common import log, nonnegative_int, positive_int

DEFAULT_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)  # qcreep.diagnose.DEFAULT_SIZES (a test keeps them equal)


def add_diagnose_options(parser) -> None:
    """The sample sizes of the diagnostics (shared by ``diagnose`` and ``run --diagnose``)."""
    group = parser.add_argument_group("diagnostics", "sample sizes of qcreep diagnose (and run --diagnose)")
    group.add_argument("--diag-inputs", dest="diag_inputs", type=positive_int, default=50, metavar="N",
                       help="fitted examples for the Fisher and the gradients (default 50)")
    group.add_argument("--diag-inits", dest="diag_inits", type=positive_int, default=10, metavar="N",
                       help="fresh initialisations for the gradient variance (default 10)")
    group.add_argument("--diag-samples", dest="diag_samples", type=positive_int, default=500, metavar="N",
                       help="parameter pairs for the expressibility of each quantum slot (default 500)")
    group.add_argument("--diag-sizes", dest="diag_sizes", nargs="+", type=positive_int, metavar="N",
                       help="dataset sizes of the effective dimension, each at least 19 (default "
                            f"{' '.join(map(str, DEFAULT_SIZES))})")
    group.add_argument("--diag-seed", dest="diag_seed", type=nonnegative_int, default=0, metavar="S",
                       help="seed of every random draw of the diagnostics (default 0)")
    group.add_argument("--scan-qubits", nargs="+", type=positive_int, metavar="N",
                       help="register sizes of the gradient-variance scan of each quantum family (default 2 3 4 5)")
    group.add_argument("--scan-inits", type=positive_int, default=200, metavar="N",
                       help="initialisations per register size in the scan (default 200)")
    group.add_argument("--no-scan", dest="scan", action="store_false", help="skip the scan over register sizes")


def add_parser(sub) -> None:
    diag = sub.add_parser("diagnose", help="effective dimension, gradient variance, expressibility and entangling "
                                           "capability of every rung of a finished ladder")
    diag.add_argument("results_dir", help="a results folder written by qcreep run")
    diag.add_argument("--seeds", nargs="+", type=nonnegative_int, metavar="SEED",
                      help="diagnose only the runs of these seeds (default every seed)")
    add_diagnose_options(diag)
    bar = diag.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show a progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")


def diagnose_spec(args):
    """The :class:`qcreep.diagnose.DiagnoseSpec` of the parsed options, validated (a bad value: one line, exit 2)."""
    from qcreep.diagnose import DEFAULT_SCAN_QUBITS, DiagnoseSpec

    return DiagnoseSpec(inputs=args.diag_inputs, inits=args.diag_inits, samples=args.diag_samples,
                        sizes=tuple(args.diag_sizes or DEFAULT_SIZES), seed=args.diag_seed,
                        scan_qubits=tuple(args.scan_qubits or DEFAULT_SCAN_QUBITS),
                        scan_inits=args.scan_inits).validate()


def run_diagnostics(out_dir, spec, *, run_ids=None, scan: bool = True, progress=None) -> list[dict]:
    """Diagnose the runs of ``out_dir`` (and scan their quantum families), with a progress bar when asked.

    The caller holds the folder's lock. Returns the per-run results."""
    from qcreep.diagnose import diagnose_folder, family_scan, quantum_families

    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(desc="diagnose", unit="run", leave=False, file=sys.stderr)

    def advance(done, total):
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        results = diagnose_folder(out_dir, spec, run_ids=run_ids, log=log, progress=advance)
    finally:
        if bar is not None:
            bar.close()
    if scan and results:
        family_scan(out_dir, spec, quantum_families(results), log=log)
    return results


def cmd_diagnose(args) -> int:
    from qcreep.errors import QcreepError
    from qcreep.files import results_lock
    from qcreep.report import load_records, write_report
    from qcreep.report.diagnostics import diagnostics_rows, load_diagnostics

    spec = diagnose_spec(args)
    records = load_records(args.results_dir)  # a missing or empty folder fails before anything is locked
    run_ids = None
    if args.seeds is not None:
        run_ids = {r["run_id"] for r in records if r.get("seed") in set(args.seeds)}
    with results_lock(args.results_dir):
        results = run_diagnostics(args.results_dir, spec, run_ids=run_ids, scan=args.scan, progress=args.progress)
        if not results:
            which = f" of seeds {' '.join(map(str, args.seeds))}" if args.seeds is not None else ""
            raise QcreepError(f"no complete run{which} with real angles under {args.results_dir} to diagnose; "
                              "finish one with `qcreep run --out DIR` first")
        paths = write_report(args.results_dir)
    runs, _ = load_diagnostics(args.results_dir)
    wanted = {r["run_id"] for r in results}
    print_diagnostics(diagnostics_rows([r for r in runs if r["run_id"] in wanted]))
    print(f"\nreport: {paths['report']}", file=sys.stderr)
    return 0


def print_diagnostics(rows: list[dict]) -> None:
    """One line per rung: accuracy, effective dimension (init -> trained), gradient variance, quantum slots."""
    for row in rows:
        acc, ed_init, ed_end, log_var = row["acc"], row["ed_init"], row["ed_trained"], row["log_var"]
        end = f" -> {ed_end[0]:.1f} trained" if ed_end[0] is not None else ""
        slots = "; ".join(f"{slot} expressibility {e['expressibility'][0]:.3f}, entangling "
                          f"{e['entangling_capability'][0]:.3f}" if e["expressibility"][0] is not None
                          else f"{slot} a fixed circuit" for slot, e in row["layers"].items())
        accuracy = f"{acc[0]:.2f}%" if acc[0] is not None else "—"
        print(f"{row['dataset']} {row['label']} ({len(row['seeds'])} seeds, test {accuracy}): d_eff "
              f"{ed_init[0]:.1f} at init{end} of d={row['n_params']:,} at n={row['size']:,.0f}; log10 gradient "
              f"variance {log_var[0]:.2f}" + (f"; {slots}" if slots else ""))
