"""``write_report``: read the run records under a directory and write ``report.md``, ``summary.csv`` and plots.

Run records are only read. Every output goes through :mod:`qcreep.files`: written to a temporary
file, synced and renamed into place, so a failed write (full disk, read-only folder) leaves the
previous file intact and no temporary file behind, and is reported as a one-line
:class:`~qcreep.errors.OutputError`.
"""

from __future__ import annotations

from pathlib import Path

from qcreep.files import atomic_write_text, ensure_dir
from qcreep.report.compare import rung_comparisons
from qcreep.report.diagnostics import diagnostics_rows, diagnostics_section, load_diagnostics, plot_diagnostics
from qcreep.report.hardware import hardware_rows, hardware_section, load_hardware, plot_hardware
from qcreep.report.markdown import report_text
from qcreep.report.plots import plot_curves, plot_final, rung_colors, safe_name
from qcreep.report.records import load_records
from qcreep.report.rungs import dataset_rank
from qcreep.report.summary import incomplete_runs, summarize
from qcreep.report.tables import write_csv


def write_report(results_dir, out_dir=None) -> dict:
    """Write ``report.md``, ``summary.csv`` and PNG plots for the run records under ``results_dir``.

    Outputs go to ``out_dir`` (default: ``results_dir``; created if missing). Per dataset there is
    ``curves_<dataset>.png`` (accuracy per epoch: mean ± sd band per rung and angle mode,
    validation dashed, published PyTorch numbers as markers, incomplete runs dotted) and
    ``final_<dataset>.png`` (final accuracy ± sd beside the published number at the same epoch),
    and, where ``qcreep evaluate`` has scored runs, ``hardware_<dataset>.png`` (accuracy against
    shots and against depolarising noise) with the report's "From simulation to hardware" section,
    and, where ``qcreep diagnose`` has run, ``diagnostics.png`` (gradient variance against qubits per
    quantum family, effective dimension against dataset size per rung) with its section.

    A record file that cannot be read or is malformed is left out, and ``report.md`` names it and
    why (:func:`~qcreep.report.records.load_records` with ``skipped``).

    Returns a dict of the paths written: ``"report"``, ``"csv"``, and ``"curves_<dataset>"`` /
    ``"final_<dataset>"`` for each plot. Raises :class:`~qcreep.errors.QcreepError` when no valid
    record remains and :class:`~qcreep.errors.OutputError` when an output cannot be written.

    Example:
        >>> paths = write_report("runs/mnist")          # doctest: +SKIP
        >>> sorted(paths)                               # doctest: +SKIP
        ['csv', 'curves_mnist', 'final_mnist', 'report']
    """
    root = Path(results_dir)
    skipped: list = []
    records = load_records(root, skipped=skipped)  # a corrupt record is named in the report, not fatal
    out = ensure_dir(Path(out_dir) if out_dir is not None else root)

    rows = summarize(records)
    incomplete = incomplete_runs(records)
    comparisons = rung_comparisons(rows)
    hardware = hardware_rows(load_hardware(root))
    paths: dict[str, str] = {}

    datasets = sorted({item["dataset"] for item in rows + incomplete}, key=dataset_rank)
    plot_names = []
    for ds in datasets:
        ds_rows = [r for r in rows if r["dataset"] == ds]
        ds_incomplete = [r for r in incomplete if r["dataset"] == ds]
        colors = rung_colors(ds_rows, ds_incomplete)
        curves = out / f"curves_{safe_name(ds)}.png"
        plot_curves(ds, ds_rows, ds_incomplete, colors, curves)
        paths[f"curves_{ds}"] = str(curves)
        names = [curves.name]
        if ds_rows:
            final = out / f"final_{safe_name(ds)}.png"
            plot_final(ds, ds_rows, colors, final, comparisons)
            paths[f"final_{ds}"] = str(final)
            names.append(final.name)
        ds_hardware = [r for r in hardware if r["dataset"] == ds]
        if ds_hardware:
            hw = out / f"hardware_{safe_name(ds)}.png"
            plot_hardware(ds, ds_hardware, hw)
            paths[f"hardware_{ds}"] = str(hw)
            names.append(hw.name)
        plot_names.append((ds, names))

    diag_runs, families = load_diagnostics(root)
    diag_rows = diagnostics_rows(diag_runs)
    diag_lines = diagnostics_section(diag_rows, families)
    if diag_lines:
        diag_plot = out / "diagnostics.png"
        plot_diagnostics(diag_rows, families, diag_plot)
        paths["diagnostics"] = str(diag_plot)
        plot_names.append((None, [diag_plot.name]))

    csv_path = out / "summary.csv"
    write_csv(rows, csv_path)
    paths["csv"] = str(csv_path)

    report_path = out / "report.md"
    atomic_write_text(report_path, report_text(records, rows, incomplete, comparisons, root, plot_names,
                                                  hardware_section(hardware) + diag_lines, skipped=skipped))
    paths["report"] = str(report_path)
    return paths
