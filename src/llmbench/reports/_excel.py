"""The Excel report (openpyxl): Summary, Metrics, Repetitions and Environment sheets.

Every sheet has a bold frozen header, an auto-filter, number formats by unit and widths fitted to
its content. On the Summary sheet the best value of each metric column is green and the worst red
(direction by metric: tok/s higher is better, latency and memory lower).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmbench.measurement import registry
from llmbench.measurement.metrics import Summary
from llmbench.reports._escape import spreadsheet_formula
from llmbench.reports._imports import import_workbook
from llmbench.reports._rows import (
    STEP_COLUMNS,
    Column,
    ReportRun,
    environment_row,
    leaderboard_of,
    leaderboard_table,
    rows,
    step_rows,
    used_columns,
)

_BEST_FILL = "C6EFCE"
_WORST_FILL = "FFC7CE"
_HEADER_FILL = "DDEBF7"
_MAX_WIDTH = 60


def write_excel(runs: Sequence[ReportRun], path: Path) -> None:
    book = import_workbook()()
    book.remove(book.worksheets[0])
    summary = book.create_sheet("Summary")
    table = rows(runs)
    columns = used_columns(table)
    _fill(summary, [c.label for c in columns], [[r.get(c.key) for c in columns] for r in table], columns)
    _highlight(summary, columns, len(table))
    board = leaderboard_of(runs)
    if board is not None:
        board_columns, board_rows = leaderboard_table(board)
        sheet = book.create_sheet("Leaderboard")
        _fill(sheet, [c.label for c in board_columns], [[r.get(c.key) for c in board_columns] for r in board_rows], board_columns)  # fmt: skip
        _highlight(sheet, board_columns, len(board_rows))
    _metrics_sheet(book.create_sheet("Metrics"), runs)
    _repetitions_sheet(book.create_sheet("Repetitions"), runs)
    steps = step_rows(runs)
    if steps:
        step_columns = used_columns(steps, STEP_COLUMNS)
        _fill(book.create_sheet("Load steps"), [c.label for c in step_columns], [[r.get(c.key) for c in step_columns] for r in steps], step_columns)  # fmt: skip
    _environment_sheet(book.create_sheet("Environment"), runs)
    book.save(path)


def _number_format(column: Column | None) -> str | None:
    if column is None or not column.numeric:
        return None
    return "0" if column.digits == 0 else "0." + "0" * column.digits


def _fill(sheet: Any, header: Sequence[str], body: Sequence[Sequence[Any]], columns: Sequence[Column | None]) -> None:
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    sheet.append(list(header))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor=_HEADER_FILL)
    for values in body:
        sheet.append([_cell_value(value) for value in values])
        for cell in sheet[sheet.max_row]:
            if spreadsheet_formula(cell.value):
                cell.data_type = "s"  # text, never a formula (openpyxl makes "=..." one)
    widths = [len(str(h)) for h in header]
    for index, column in enumerate(columns):
        fmt = _number_format(column)
        for (cell,) in sheet.iter_rows(min_row=2, min_col=index + 1, max_col=index + 1):
            if fmt and isinstance(cell.value, (int, float)):
                cell.number_format = fmt
            widths[index] = max(widths[index], min(_MAX_WIDTH, len(_shown(cell.value, column))))
    for index, width in enumerate(widths, 1):
        sheet.column_dimensions[get_column_letter(index)].width = width + 2
    sheet.freeze_panes = "B2" if header and header[0] in ("run", "Run") else "A2"
    if body:
        sheet.auto_filter.ref = sheet.dimensions


def _cell_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _shown(value: Any, column: Column | None) -> str:
    if isinstance(value, float) and column is not None:
        return f"{value:,.{column.digits}f}"
    return "" if value is None else str(value)


def _highlight(sheet: Any, columns: Sequence[Column], count: int) -> None:
    """Best value green, worst red, in every metric column that has a direction."""
    from openpyxl.formatting.rule import FormulaRule
    from openpyxl.styles import PatternFill
    from openpyxl.utils import get_column_letter

    if count < 2:
        return
    for index, column in enumerate(columns, 1):
        if column.better is None:
            continue
        letter = get_column_letter(index)
        area = f"${letter}$2:${letter}${count + 1}"
        best, worst = ("MAX", "MIN") if column.better == "higher" else ("MIN", "MAX")
        for function, color in ((best, _BEST_FILL), (worst, _WORST_FILL)):
            formula = f"AND(ISNUMBER({letter}2),{letter}2={function}({area}),COUNT({area})>1)"
            rule = FormulaRule(  # type: ignore[no-untyped-call]
                formula=[formula], fill=PatternFill("solid", bgColor=color), stopIfTrue=True
            )
            sheet.conditional_formatting.add(f"{letter}2:{letter}{count + 1}", rule)


_METRIC_HEADER = ("run", "model", "backend", "settings", "metric", "unit", "count", "mean", "std", "min", "p50", "p90", "p99", "max")  # fmt: skip


def _metrics_sheet(sheet: Any, runs: Sequence[ReportRun]) -> None:
    body = []
    for run in runs:
        result = run.record.result
        if result is None:
            continue
        for metric in registry.GENERATION_SUMMARY:
            stats = metric.read(result)
            if not isinstance(stats, Summary) or not stats.count:
                continue
            values = [metric.value(result, name) for name in registry.STATS]
            body.append(
                [run.record.id, run.label, run.record.backend, run.settings, metric.key, metric.unit, stats.count, *values]
            )  # fmt: skip
    number = Column("value", "value", "x", digits=4)
    count_column = Column("count", "count", "count", digits=0)
    _fill(sheet, _METRIC_HEADER, body, [None] * 6 + [count_column] + [number] * 7)


def _repetitions_sheet(sheet: Any, runs: Sequence[ReportRun]) -> None:
    shown = (registry.TTFT, registry.DECODE, registry.ITL, registry.E2E)
    header = ("run", "model", "backend", "settings", "repetition", "warm-up", "prompt tokens", "output tokens",
              *(metric.title for metric in shown))  # fmt: skip
    body = []
    for run in runs:
        for rep in run.repetitions:
            m = rep.metrics
            values = [metric.shown(metric.repetition_value(m)) for metric in shown]
            body.append(
                [run.record.id, run.label, run.record.backend, run.settings, rep.index, rep.warmup,
                 m.prompt_tokens, m.output_tokens, *values]
            )  # fmt: skip
    tokens = Column("tokens", "tokens", "tokens", digits=0)
    columns = [Column(m.key, m.title, m.unit, digits=m.digits) for m in shown]
    _fill(sheet, header, body, [None] * 6 + [tokens, tokens, *columns])


def _environment_sheet(sheet: Any, runs: Sequence[ReportRun]) -> None:
    flat = [environment_row(run.record) for run in runs]
    header: list[str] = []
    for entry in flat:
        header.extend(name for name in entry if name not in header)
    _fill(sheet, header, [[entry.get(name) for name in header] for entry in flat], [None] * len(header))
