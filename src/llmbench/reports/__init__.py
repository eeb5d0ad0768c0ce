"""Reports: stored runs as Excel, CSV, JSON, Markdown or a self-contained HTML page; run comparison."""

from llmbench.reports._escape import csv_field
from llmbench.reports._rows import COLUMNS, STEP_COLUMNS, Column, ReportRun, load_runs, rows, step_rows
from llmbench.reports._write import WRITERS, write_report

__all__ = [
    "COLUMNS",
    "STEP_COLUMNS",
    "WRITERS",
    "Column",
    "ReportRun",
    "csv_field",
    "load_runs",
    "rows",
    "step_rows",
    "write_report",
]
