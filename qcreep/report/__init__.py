"""Reports over run records: tables, a CSV summary, statistics and plots, compared with the published numbers.

A report reads only the JSON run records that ``qcreep run`` writes (one file per run, found
recursively under a results directory). It never imports the training code. The model definitions
(and so torch) are imported only to recognise an explicit assignment that equals a replacement level.

Modules, one concern each:

* :mod:`qcreep.report.records` - loading and checking run records (:func:`load_records`);
* :mod:`qcreep.report.rungs` - which rung a record belongs to, and the order of rungs;
* :mod:`qcreep.report.summary` - grouping records into rows: mean ± population sd over seeds, the
  published comparison, tuning, validation (:func:`summarize`, :func:`incomplete_runs`);
* :mod:`qcreep.report.compare` - seed-paired comparisons between rungs (:mod:`qcreep.stats`);
* :mod:`qcreep.report.markdown` - the terminal table (:func:`markdown_table`) and ``report.md``;
* :mod:`qcreep.report.tables` - ``summary.csv``;
* :mod:`qcreep.report.plots` - the PNG plots;
* :mod:`qcreep.report.write` - :func:`write_report`, which writes them all atomically.

Statistics follow the paper: mean and *population* standard deviation (ddof=0) over seeds. Only runs
whose ``status`` is ``"complete"`` enter the tables; the others are listed as incomplete and drawn
dotted in the learning-curve plots.

Example:
    >>> from qcreep.report import load_records, summarize, markdown_table, write_report
    >>> rows = summarize(load_records("runs/mnist"))     # doctest: +SKIP
    >>> print(markdown_table(rows))                      # doctest: +SKIP
    >>> write_report("runs/mnist")                       # doctest: +SKIP
"""

from qcreep.report.compare import rung_comparisons
from qcreep.report.markdown import markdown_table, report_text
from qcreep.report.records import PATH_KEY, REQUIRED_KEYS, SUPPORTED_RECORD_VERSIONS, check_record, load_records
from qcreep.report.summary import incomplete_runs, summarize
from qcreep.report.tables import CSV_COLUMNS, csv_text
from qcreep.report.write import write_report

__all__ = [
    "CSV_COLUMNS", "PATH_KEY", "REQUIRED_KEYS", "SUPPORTED_RECORD_VERSIONS", "check_record", "csv_text",
    "incomplete_runs", "load_records", "markdown_table", "report_text", "rung_comparisons", "summarize",
    "write_report",
]
