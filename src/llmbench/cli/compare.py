"""``llmbench compare``: is B faster, slower, better or worse than A, beyond noise?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from llmbench.cli._output import emit_json, format_option

if TYPE_CHECKING:
    from llmbench.reports.compare import MetricComparison


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@format_option
def compare_command(run_a: str, run_b: str, output_format: str) -> None:
    """Compare two stored runs (or two sweeps) metric by metric, with a significance test.

    Speed runs: the ratio B/A of each metric's mean and a Mann-Whitney U test over the
    repetitions. Evaluations: accuracy of each on the examples both scored, with an exact McNemar
    test on the paired outcomes. Two sweep ids compare every run the sweeps share (same config),
    e.g. the same sweep file before and after a library upgrade, or on two machines.

    \b
    Examples:
      llmbench compare 3f2a 9b1c
      llmbench compare 3f2a 9b1c --format json
      llmbench compare SWEEP_BEFORE SWEEP_AFTER
    """
    from dataclasses import asdict

    from llmbench.reports.compare import compare_runs, is_sweep
    from llmbench.store import Store

    with Store() as store:
        if is_sweep(store, run_a) and is_sweep(store, run_b):
            _compare_sweeps(store, run_a, run_b, output_format)
            return
        a, b, rows = compare_runs(store, run_a, run_b)
    if output_format == "json":
        emit_json(
            {
                "a": a.id,
                "b": b.id,
                "metrics": [asdict(r) | {"significant": r.significant, "verdict": r.verdict} for r in rows],
            }
        )
        return
    from rich.markup import escape
    from rich.table import Table

    from llmbench.cli._output import console

    table = Table(title=escape(f"A = {a.id} ({a.model}, {a.backend})   B = {b.id} ({b.model}, {b.backend})"))
    for column in ("metric", "A", "B", "B / A", "p", "B is", "test", "n"):
        table.add_column(column, justify="left" if column in ("metric", "test", "B is") else "right")
    for row in rows:
        table.add_row(*_cells(row), row.test, f"{row.n_a}/{row.n_b}")
    out = console()
    out.print(table)
    out.print("* p < 0.05")


def _compare_sweeps(store: Any, sweep_a: str, sweep_b: str, output_format: str) -> None:
    from dataclasses import asdict

    from llmbench.reports.compare import compare_sweeps

    a, b, pairs = compare_sweeps(store, sweep_a, sweep_b)
    if output_format == "json":
        emit_json(
            {
                "a": a,
                "b": b,
                "pairs": [
                    {
                        "key": pair.key,
                        "run": pair.name,
                        "a": pair.a.id,
                        "b": pair.b.id,
                        "metrics": [
                            asdict(m) | {"significant": m.significant, "verdict": m.verdict} for m in pair.metrics
                        ],
                    }
                    for pair in pairs
                ],
            }
        )
        return
    from rich.markup import escape
    from rich.table import Table

    from llmbench.cli._output import console

    table = Table(title=escape(f"sweep A = {a}   sweep B = {b}: {len(pairs)} shared run(s)"))
    for column in ("run", "metric", "A", "B", "B / A", "p", "B is", "n"):
        table.add_column(column, justify="left" if column in ("run", "metric", "B is") else "right", overflow="fold")
    for pair in pairs:
        for index, row in enumerate(pair.metrics):
            table.add_row(
                escape(pair.name) if index == 0 else "",
                *_cells(row),
                f"{row.n_a}/{row.n_b}",
                end_section=index == len(pair.metrics) - 1,
            )
    out = console()
    out.print(table)
    out.print("* p < 0.05 (Mann-Whitney U over repetitions)")


def _cells(row: MetricComparison) -> tuple[str, ...]:
    """Metric (with its unit), A, B (in that unit), B / A, p (starred when significant), verdict."""
    from rich.markup import escape

    from llmbench.cli._output import number
    from llmbench.measurement.registry import format_number

    mark = " *" if row.significant else ""
    return (
        escape(row.label or row.metric),
        format_number(row.shown(row.a), row.digits),
        format_number(row.shown(row.b), row.digits),
        number(row.ratio, 3),
        (number(row.p_value, 4) + mark) if row.p_value is not None else "-",
        row.verdict,
    )
