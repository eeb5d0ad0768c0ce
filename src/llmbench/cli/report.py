"""``llmbench report``: stored runs as Excel, CSV, JSON, Markdown or HTML."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("report")
@click.option(
    "-s", "--sweep", "sweeps", multiple=True, metavar="ID", help="A sweep's runs (repeatable; LAST = newest)."
)
@click.option("-r", "--run", "run_ids", multiple=True, metavar="ID", help="A stored run (repeatable).")
@click.option(
    "-o",
    "--out",
    "outputs",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Output file; .xlsx, .csv, .json, .md or .html (repeatable).",
)
@format_option
def report_command(
    sweeps: tuple[str, ...], run_ids: tuple[str, ...], outputs: tuple[str, ...], output_format: str
) -> None:
    """Write a report of stored runs; the format follows each --out file's extension.

    Without --sweep or --run, the newest sweep is reported. The HTML report is one file that
    works offline (charts included); the Excel report has Summary, Metrics, Repetitions and
    Environment sheets.

    \b
    Examples:
      llmbench report --out report.html
      llmbench report --sweep 3f2a9c --out results.xlsx --out results.csv
      llmbench report --run 3f2a --run 9b1c --out two-runs.md
    """
    from llmbench.errors import LLMBenchError
    from llmbench.reports import load_runs, write_report
    from llmbench.store import Store

    with Store() as store:
        if (not sweeps and not run_ids) or "LAST" in sweeps:
            newest = store.sweeps(limit=1)
            if not newest:
                raise LLMBenchError("the store holds no sweep", "run one with: llmbench sweep FILE, or pass --run ID")
            sweeps = (*(s for s in sweeps if s != "LAST"), newest[0].id)
        runs = load_runs(store, sweeps, run_ids)
    written = [str(write_report(runs, out)) for out in outputs]
    if output_format == "json":
        emit_json({"runs": [run.record.id for run in runs], "written": written})
    else:
        for path in written:
            click.echo(f"Wrote {path} ({len(runs)} run(s))")
