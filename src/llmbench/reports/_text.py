"""CSV, JSON and Markdown reports: the same rows as the Excel summary."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmbench.reports._escape import csv_field, markdown_text
from llmbench.reports._rows import (
    STEP_COLUMNS,
    Column,
    ReportRun,
    leaderboard_of,
    leaderboard_table,
    rows,
    step_rows,
    used_columns,
)
from llmbench.selection import as_json
from llmbench.store import finite


def write_csv(runs: Sequence[ReportRun], path: Path) -> None:
    """One row per run; header = column keys (units in the names: ``_ms``, ``_mib``, ``tok_s``).

    Text that a spreadsheet would run as a formula is written with a leading ``'`` (OWASP). When the
    runs' configurations were evaluated, the leaderboard goes beside it: ``NAME-leaderboard.csv``.
    """
    table = rows(runs)
    _write_csv(path, used_columns(table), table)
    board = leaderboard_of(runs)
    if board is not None:
        columns, board_rows = leaderboard_table(board)
        _write_csv(path.with_name(f"{path.stem}-leaderboard.csv"), columns, board_rows)


def _write_csv(path: Path, columns: Sequence[Column], table: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([column.key for column in columns])
        for row in table:
            writer.writerow(["" if row.get(c.key) is None else csv_field(row[c.key]) for c in columns])


def write_json(runs: Sequence[ReportRun], path: Path) -> None:
    """Every run in full: the summary row plus its config, metrics, environment and repetitions."""
    document = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "columns": [column.describe() for column in used_columns(rows(runs))],
        "runs": [
            {
                "row": row,
                "config": run.record.config,
                "metrics": run.record.metrics,
                "environment": run.record.environment,
                "repetitions": [rep.to_json() for rep in run.repetitions],
            }
            for run, row in zip(runs, rows(runs), strict=True)
        ],
        "leaderboard": as_json(board) if (board := leaderboard_of(runs)) is not None else None,
    }
    path.write_text(json.dumps(finite(document), indent=2, default=str), encoding="utf-8")


LEADERBOARD_NOTE = (
    "One row per configuration (model, backend, settings); accuracy only from an evaluation of exactly it, "
    "with its 95% Wilson interval and count. Standing: best, or tied with best (paired McNemar, Holm). "
    "On front of: the cost axes on whose Pareto front against accuracy the row lies. '-' is not measured."
)

_MARKDOWN_KEYS = ("model", "backend", "settings", "status", "load_s", "ttft_ms", "encode_ms", "vision_encode_ms", "image_tokens", "decode_tok_s", "decode_roofline", "prefill_roofline", "itl_ms", "e2e_p99_ms", "embed_texts_s", "peak_rss_mib", "peak_vram_mib", "accuracy", "perplexity", "errors", "id")  # fmt: skip


def write_markdown(runs: Sequence[ReportRun], path: Path) -> None:
    """A Markdown table of the key metrics (best value bold), then failures and the machine."""
    table = rows(runs)
    used = {column.key: column for column in used_columns(table)}
    columns = [used[key] for key in _MARKDOWN_KEYS if key in used]
    lines = [f"# llmbench report ({len(table)} run(s))", "", *_markdown_table(table, columns)]
    board = leaderboard_of(runs)
    if board is not None:
        board_columns, board_rows = leaderboard_table(board, brief=True)
        lines += ["", "## Leaderboard", "", *_markdown_table(board_rows, board_columns)]
        lines += ["", _escape(LEADERBOARD_NOTE)]
    steps = step_rows(runs)
    if steps:
        lines += ["", "## Load steps", "", *_markdown_table(steps, used_columns(steps, STEP_COLUMNS))]
    failures = [(row["id"], row["model"], row["error"]) for row in table if row.get("error")]
    if failures:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {_escape(run_id)} {_escape(model)}: {_escape(error)}" for run_id, model, error in failures]
    if runs:
        env = runs[0].record.environment or {}
        lines += ["", "## Machine", ""]
        lines.append(
            _escape(
                f"{env.get('cpu_model', '?')}, {env.get('cpu_logical_cores', '?')} logical cores, "
                f"{(env.get('ram_bytes') or 0) / 2**30:.1f} GiB RAM, {env.get('os', '?')}, Python {env.get('python', '?')}"
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _markdown_table(table: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    """The table's lines, the best value of each column with a direction in bold."""
    best = {c.key: _best(table, c) for c in columns if c.better}
    lines = ["| " + " | ".join(c.label for c in columns) + " |"]
    lines.append("| " + " | ".join("---:" if c.numeric else "---" for c in columns) + " |")
    for row in table:
        cells = []
        for column in columns:
            text = _format(row.get(column.key), column)
            if column.key in best and row.get(column.key) is not None and row[column.key] == best[column.key]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _best(table: Sequence[dict[str, Any]], column: Column) -> Any:
    values = [row[column.key] for row in table if isinstance(row.get(column.key), (int, float))]
    if len(values) < 2:
        return None
    return max(values) if column.better == "higher" else min(values)


def _format(value: Any, column: Column) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and column.numeric:
        return f"{value:,.{column.digits}f}"
    return _escape(str(value))


def _escape(text: str) -> str:
    """Markdown text shown literally: no link, image, HTML or emphasis; pipes kept inside their cell."""
    return markdown_text(text)
