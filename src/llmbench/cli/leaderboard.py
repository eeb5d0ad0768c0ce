"""``llmbench leaderboard``: one row per configuration, quality per task beside measured cost."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from llmbench.cli._output import console, emit_csv, emit_json

if TYPE_CHECKING:
    from llmbench.measurement.registry import Column
    from llmbench.selection import Leaderboard, Row
    from llmbench.store import Store

F = TypeVar("F", bound=Callable[..., Any])

_FILTER = re.compile(r"^\s*([\w:.\-]+)\s*(>=|<=|!=|=|<|>|~)\s*(.*?)\s*$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
    "!=": operator.ne,
}


def selection_options(fn: F) -> F:
    """The options ``leaderboard`` and ``recommend`` share: which runs, which prices, which statistics."""
    options = [
        click.option(
            "-s",
            "--sweep",
            "sweeps",
            multiple=True,
            metavar="ID",
            help="Only these sweeps' configurations (LAST = newest).",
        ),
        click.option("--price-per-hour", type=float, help="What the machine costs per hour (any currency)."),
        click.option(
            "--price-per-m-input",
            type=float,
            help="An API target's price per million input (prompt) tokens; needs a timed run's token counts.",
        ),
        click.option("--price-per-m-output", type=float, help="An API target's price per million output tokens."),
        click.option("--normalization", help="Accuracy under this normalization (default: each evaluation's first)."),
        click.option(
            "--alpha", type=float, default=0.05, show_default=True, help="Significance level of the tie test."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_board(
    sweeps: Sequence[str],
    price_per_hour: float | None,
    price_per_m_input: float | None,
    price_per_m_output: float | None,
    normalization: str | None,
    alpha: float,
) -> Leaderboard:
    from llmbench.errors import InvalidOptionError
    from llmbench.selection import Price, check_normalization, leaderboard_from_store
    from llmbench.store import Store

    for name, value in (("--price-per-hour", price_per_hour), ("--price-per-m-input", price_per_m_input),
                        ("--price-per-m-output", price_per_m_output)):  # fmt: skip
        if value is not None and not value > 0:
            raise InvalidOptionError(f"{name} must be a positive number, got {value}", f"e.g. {name} 1.5")
    if not 0 < alpha < 1:
        raise InvalidOptionError(f"--alpha must lie between 0 and 1, got {alpha}", "e.g. --alpha 0.05")
    if normalization is not None:
        check_normalization(normalization)
    price = Price(price_per_hour, price_per_m_input, price_per_m_output)
    with Store() as store:
        chosen = _sweep_ids(store, sweeps)
        board = leaderboard_from_store(
            store, chosen, price=price if price.given else None, normalization=normalization, alpha=alpha
        )
    if not board.rows:
        from llmbench.errors import LLMBenchError

        raise LLMBenchError(
            "the store holds no finished run to rank",
            "measure something first: llmbench run, llmbench eval --task T, or llmbench sweep FILE",
        )
    return board


def _sweep_ids(store: Store, sweeps: Sequence[str]) -> list[str]:
    from llmbench.errors import LLMBenchError

    chosen = [s for s in sweeps if s != "LAST"]
    if "LAST" in sweeps:
        newest = store.sweeps(limit=1)
        if not newest:
            raise LLMBenchError("the store holds no sweep", "run one with: llmbench sweep FILE")
        chosen.append(newest[0].id)
    return chosen


@click.command("leaderboard")
@selection_options
@click.option("--task", "tasks", multiple=True, help="Show only this task (name, file or folder; repeatable).")
@click.option(
    "--sort", "sort_key", metavar="COLUMN", help="Sort by a column key, or accuracy, decode, ttft, memory, cost."
)
@click.option("--ascending", is_flag=True, help="Sort lowest first (default: best first).")
@click.option(
    "--filter", "filters", multiple=True, metavar="EXPR", help="backend=llama.cpp, model~Smol, decode_tok_s>=20 ..."
)
@click.option("--columns", metavar="KEY,...", help="Only these columns (see --format json for every key).")
@click.option(
    "--format", "output_format", type=click.Choice(("table", "json", "csv")), default="table", show_default=True
)
def leaderboard_command(
    sweeps: tuple[str, ...],
    price_per_hour: float | None,
    price_per_m_input: float | None,
    price_per_m_output: float | None,
    normalization: str | None,
    alpha: float,
    tasks: tuple[str, ...],
    sort_key: str | None,
    ascending: bool,
    filters: tuple[str, ...],
    columns: str | None,
    output_format: str,
) -> None:
    """One row per configuration (model, backend, settings): accuracy per task, speed, memory, spec.

    Accuracy comes only from an evaluation of exactly that configuration, with its 95% interval and
    count; "best" and "tied with best" follow a paired McNemar test with Holm's correction. "on
    front of" names the cost axes (decode, ttft, memory, cost) on whose Pareto front against
    accuracy the row lies. A memory figure from the plan (nothing measured) says "estimated".
    Missing values show as "-", never as zero.

    \b
    Examples:
      llmbench leaderboard
      llmbench leaderboard --sweep LAST --task sports_understanding --sort decode
      llmbench leaderboard --filter backend=llama.cpp --filter "memory_mib<2000" --price-per-hour 0.5
      llmbench leaderboard --columns model,backend,decode_tok_s,memory_mib --format csv
    """
    from llmbench.errors import InvalidOptionError
    from llmbench.selection import as_json, flat, resolve_task

    board = load_board(sweeps, price_per_hour, price_per_m_input, price_per_m_output, normalization, alpha)
    shown_tasks = list(board.tasks)
    if tasks:
        shown_tasks = []
        for wanted in tasks:
            found = resolve_task(board, wanted)
            if found is None:
                raise InvalidOptionError(
                    f"no configuration was evaluated on {wanted}",
                    f"evaluated tasks: {', '.join(board.tasks) or 'none'} (llmbench eval --task {wanted})",
                )
            shown_tasks.append(found)
    rows = [row for row in board.rows if all(_matches(board, row, rule) for rule in [_rule(f) for f in filters])]
    rows = _sorted(board, rows, sort_key, shown_tasks, ascending)
    chosen = _columns(board, shown_tasks, columns)
    if output_format == "json":
        document = as_json(board)
        names = {row.name for row in rows}
        order = {row.name: index for index, row in enumerate(rows)}
        document["rows"] = sorted((r for r in document["rows"] if r["name"] in names), key=lambda r: order[r["name"]])
        document["columns"] = [column.describe() for column in chosen]
        emit_json(document)
        return
    flats = [flat(board, row) for row in rows]
    if output_format == "csv":
        from llmbench.reports import csv_field

        emit_csv(
            [column.key for column in chosen],
            [[None if r.get(c.key) is None else csv_field(r[c.key]) for c in chosen] for r in flats],
        )
        return
    _print(board, rows, flats, chosen, shown_tasks)


def _rule(text: str) -> tuple[str, str, str]:
    from llmbench.errors import InvalidOptionError

    match = _FILTER.match(text)
    if not match:
        raise InvalidOptionError(f"cannot read filter {text!r}", "write KEY=VALUE, KEY~TEXT or KEY>=NUMBER")
    key, op, value = match.groups()
    return _alias(key), op, value


def _matches(board: Leaderboard, row: Row, rule: tuple[str, str, str]) -> bool:
    from llmbench.errors import InvalidOptionError
    from llmbench.selection import flat

    key, op, wanted = rule
    values = flat(board, row)
    if key not in values:
        raise InvalidOptionError(f"unknown filter key {key!r}", f"keys: {', '.join(sorted(values))[:300]}")
    value = values[key]
    if op == "~":
        return value is not None and wanted.lower() in str(value).lower()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(wanted)
        except ValueError:
            raise InvalidOptionError(
                f"{key} is a number; cannot compare it with {wanted!r}", f"e.g. {key}>=20"
            ) from None
        return _OPS[op](value, number)
    if value is None:
        return False  # missing is missing: it meets no condition
    if op in ("=", "!="):
        return _OPS[op](str(value), wanted)
    raise InvalidOptionError(f"{key} is text: use = , != or ~ with it", f"e.g. {key}~{wanted}")


def _sorted(board: Leaderboard, rows: list[Row], key: str | None, tasks: Sequence[str], ascending: bool) -> list[Row]:
    from llmbench.errors import InvalidOptionError
    from llmbench.selection import flat

    if key is None or key == "accuracy":
        key = f"accuracy:{tasks[0]}" if tasks else "decode_tok_s"
    key = _alias(key)
    columns = {column.key: column for column in _all_columns(board)}
    if key not in columns:
        raise InvalidOptionError(f"cannot sort by {key!r}", f"columns: {', '.join(columns)[:300]}")
    lower_first = columns[key].better == "lower"
    if ascending:
        lower_first = True
    elif columns[key].better is None:
        lower_first = False

    def rank(row: Row) -> tuple[int, Any]:
        value = flat(board, row).get(key)
        if value is None:
            return (1, 0)  # missing values last, whichever the direction
        if isinstance(value, (int, float)):
            return (0, value if lower_first else -value)
        return (0, str(value))

    return sorted(rows, key=rank)


def _alias(key: str) -> str:
    """An axis name (``decode``, ``memory``, ...) stands for its column; anything else for itself."""
    from llmbench.selection import AXIS_COLUMNS

    return AXIS_COLUMNS.get(key, key)


def _all_columns(board: Leaderboard) -> list[Column]:
    from llmbench.selection import columns_for

    return columns_for(board)


_TABLE_KEYS = ("model", "backend", "settings", "ttft_ms", "decode_tok_s", "load_tok_s", "memory_mib",
               "decode_roofline", "prefill_roofline", "parameters", "context_length", "license", "quantization",
               "disk_mib", "cost_per_m_output")  # fmt: skip


def _columns(board: Leaderboard, tasks: Sequence[str], wanted: str | None) -> list[Column]:
    from llmbench.errors import InvalidOptionError
    from llmbench.selection import columns_for

    every = columns_for(board, tasks)
    if wanted is None:
        return every
    by_key = {column.key: column for column in every}
    chosen = []
    for key in (part.strip() for part in wanted.split(",") if part.strip()):
        key = _alias(key)
        if key not in by_key:
            import difflib

            close = difflib.get_close_matches(key, list(by_key), n=1)
            raise InvalidOptionError(
                f"unknown column {key!r}",
                f"did you mean {close[0]!r}?" if close else f"columns: {', '.join(by_key)[:300]}",
            )
        chosen.append(by_key[key])
    if not chosen:
        raise InvalidOptionError(
            "--columns names no column", f"name one or more, comma-separated: {', '.join(by_key)[:300]}"
        )
    return chosen


def _print(
    board: Leaderboard,
    rows: Sequence[Row],
    flats: Sequence[dict[str, Any]],
    chosen: Sequence[Column],
    tasks: Sequence[str],
) -> None:
    from rich.markup import escape
    from rich.table import Table

    from llmbench.measurement.registry import format_number

    used = [c for c in chosen if any(r.get(c.key) not in (None, "") for r in flats) or c.key.startswith("accuracy:")]
    table_columns = [c for c in used if c.key in _TABLE_KEYS or c.key.split(":")[0] in ("accuracy", "front")]
    title = f"{len(rows)} configuration(s)" + (
        f", {len(board.tasks)} task(s)" if board.tasks else ", no evaluation yet"
    )
    table = Table(title=escape(title))
    for column in table_columns:
        label = column.label if not column.key.startswith("accuracy:") else f"{column.key.split(':', 1)[1]} accuracy"
        table.add_column(escape(label), justify="right" if column.numeric else "left", overflow="fold")
    for row, values in zip(rows, flats, strict=True):
        cells = []
        for column in table_columns:
            value = values.get(column.key)
            if column.key.startswith("accuracy:"):
                cells.append(_accuracy_cell(values, column.key.split(":", 1)[1]))
            elif column.key == "memory_mib" and value is not None and row.memory is not None and row.memory.estimated:
                cells.append(f"~{format_number(value, 0)} (plan)")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                cells.append(format_number(value, column.digits))
            else:
                cells.append("-" if value in (None, "") else str(value))
        table.add_row(*(escape(cell) for cell in cells))
    out = console()
    out.print(table)
    for task in tasks:
        out.print(escape(f"{task}: front = on the Pareto front of accuracy against {_front_note(board, task)}"))
    if board.tasks:
        out.print("Accuracy: value [95% Wilson interval] n; best / ≈best: tied with the best (McNemar, Holm).")
    out.print("Choose within a budget: llmbench recommend --max-memory 8GB --min-decode-tps 20")


def _accuracy_cell(values: dict[str, Any], task: str) -> str:
    accuracy = values.get(f"accuracy:{task}")
    if accuracy is None:
        return "not evaluated"
    interval = values.get(f"ci95:{task}") or ""
    standing = values.get(f"standing:{task}") or ""
    mark = {"best": " best", "tied with best": " ≈best"}.get(standing, "")
    front = values.get(f"front:{task}") or ""
    return f"{accuracy:.3f} [{interval.replace('-', '–')}] n={values.get(f'count:{task}')}{mark}" + (
        f" ◆{front}" if front else ""
    )


def _front_note(board: Leaderboard, task: str) -> str:
    on = [row.name for row in board.rows if row.front.get(task)]
    return f"each cost axis (◆ lists them); {len(on)} of {len(board.rows)} configuration(s) lie on at least one"
