"""``qcreep report``: tables, statistics and plots from a results folder."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    rep = sub.add_parser("report", help="Markdown table, CSV and plots from run records")
    rep.add_argument("results_dir", help="a results folder written by qcreep run (its records/ folder)")
    rep.add_argument("--out", help="where to write report.md, summary.csv and plots (default RESULTS_DIR)")


def cmd_report(args) -> int:
    from qcreep.files import results_lock
    from qcreep.report import load_records, markdown_table, summarize, write_report
    from qcreep.report.records import is_trial_record

    skipped: list = []
    # a missing or empty folder fails before anything is locked; a corrupt record is left out and named
    records = load_records(args.results_dir, skipped=skipped)
    for _path, reason in skipped:
        print(f"qcreep: warning: {reason}; left out of the report", file=sys.stderr)
    if all(is_trial_record(r) for r in records):
        from qcreep.errors import QcreepError
        raise QcreepError(f"{args.results_dir} holds only tuning trials, which are scored on the validation split "
                          "alone (no test scores to report); their validation scores are in the tuning section "
                          "of the results folder's report: qcreep report on the folder above it")
    with results_lock(args.out or args.results_dir):
        paths = write_report(args.results_dir, args.out)
    print(markdown_table(summarize(records)))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


