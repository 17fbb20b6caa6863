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

    records = load_records(args.results_dir)  # a missing or empty folder fails before anything is locked
    with results_lock(args.out or args.results_dir):
        paths = write_report(args.results_dir, args.out)
    print(markdown_table(summarize(records)))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


