"""``llmbench runs`` and ``llmbench show``: what the store holds."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("runs")
@click.option("-n", "--limit", type=int, default=20, show_default=True, help="Newest N runs (0 for all).")
@format_option
def runs_command(limit: int, output_format: str) -> None:
    """List stored runs, newest first.

    \b
    Examples:
      llmbench runs
      llmbench runs -n 0 --format json
    """
    from llmbench.cli._tables import print_runs
    from llmbench.store import Store

    with Store() as store:
        records = list(store.runs(limit=limit or None))
    if output_format == "json":
        emit_json([record.summary_row() for record in records])
    else:
        print_runs(records)


@click.command("show")
@click.argument("run_id")
@format_option
def show_command(run_id: str, output_format: str) -> None:
    """Show one stored run (an id prefix is enough), with its environment.

    \b
    Examples:
      llmbench show 3f2a
      llmbench show 3f2a --format json
    """
    from llmbench.cli._tables import print_record
    from llmbench.store import Store

    with Store() as store:
        record = store.get(run_id)
    if output_format == "json":
        emit_json(record.to_json())
    else:
        print_record(record, environment=True)
