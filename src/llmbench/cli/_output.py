"""The one output layer: rich tables for people, ``--format json`` for programs.

Progress bars and tables go to stderr/stdout only in human mode; in JSON mode stdout holds exactly
one JSON document.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json")


def format_option(fn: F) -> F:
    """Add ``--format table|json`` to a command."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Human table or one JSON document on stdout.",
    )(fn)


def emit_json(data: Any) -> None:
    from llmbench.store import finite

    click.echo(json.dumps(finite(data), indent=2, default=str))


def console(stderr: bool = False) -> Any:
    """A rich console; when piped (no terminal, no $COLUMNS) it is wide enough for every table."""
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, width=width)


def human_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def number(value: float | int | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def milliseconds(value: float | None) -> str:
    return "-" if value is None else number(value * 1000, 1)


def emit_csv(header: list[str], rows: list[list[Any]]) -> None:
    """One CSV document on stdout (``--format csv``); None is an empty cell."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
    click.echo(buffer.getvalue(), nl=False)
