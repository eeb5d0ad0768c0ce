"""The HTML report: one self-contained file (plotly's JavaScript embedded) that works offline.

Charts: decode tok/s by run, TTFT and inter-token-latency distributions over repetitions, peak
memory against decode speed, load-test curves (latency against throughput) when load runs are
selected, and quality against speed when the store has evaluations of the models. Every string
from the store is escaped: in the HTML with :func:`html.escape`, in the charts by plotly's JSON
encoding plus entity-escaping of labels (plotly renders a few HTML tags in labels).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmbench.measurement import registry
from llmbench.measurement.results import LoadResult
from llmbench.reports._imports import import_plotly_io
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
from llmbench.selection import Leaderboard, Row

_SUMMARY_KEYS = ("model", "backend", "settings", "status", "kind", "load_s", "ttft_ms", "ttft_p99_ms", "encode_ms", "image_preprocess_ms", "vision_encode_ms", "image_tokens", "decode_tok_s", "decode_roofline", "prefill_roofline", "itl_ms", "itl_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "embed_texts_s", "embed_tok_s", "peak_rss_mib", "peak_vram_mib", "accuracy", "perplexity", "errors", "id")  # fmt: skip
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin-bottom: 2rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; }
th { background: #ddebf7; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { background: #c6efce; } td.worst { background: #ffc7ce; }
.chart { margin-bottom: 2rem; } pre { background: #f6f6f6; padding: 0.5rem; overflow-x: auto; }
.note { color: #666; }
"""


def _label(text: str) -> str:
    """A string for a plotly label: shown literally, never interpreted as markup."""
    return html.escape(text, quote=False)


def write_html(runs: Sequence[ReportRun], path: Path, title: str = "llmbench report") -> None:
    pio = import_plotly_io()
    figures = [
        ("Decode throughput", _decode_bars(runs), "Mean decode tokens/s per run; bars show one standard deviation."),
        ("Time to first token", _box(runs, "ttft"), "Per repetition (warm-ups excluded)."),
        ("Inter-token latency", _box(runs, "itl"), "Every gap between consecutive tokens, pooled over repetitions."),
        ("Memory against speed", _memory_scatter(runs), "Peak resident memory (VRAM when measured) against decode tok/s."),
        ("Load test", _load_curves(runs), "Latency against output throughput, one point per load step."),
    ]  # fmt: skip
    board = leaderboard_of(runs)
    if board is None:
        figures.append(("Quality against speed", None, ""))
    else:
        for task in board.tasks:
            for axis, what in (("decode", "speed"), ("memory", "memory")):
                caption = (
                    f"Accuracy on {task} (95% interval) of each configuration against its {AXIS_TITLES[axis]}; "
                    "stars joined by a line: the Pareto front (no other configuration is at least as good on both). "
                    "Hollow markers: memory estimated by the plan, not measured."
                )
                figures.append((f"Quality against {what}: {task}", _front_chart(board, task, axis), caption))
    parts = []
    first = True
    for heading, figure, caption in figures:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if figure is None:
            parts.append(f'<p class="note">{html.escape(_absent(heading))}</p>')
            continue
        figure.update_layout(height=520, margin={"b": 160}, xaxis_tickangle=-25)
        div = pio.to_html(figure, include_plotlyjs=first, full_html=False, config={"displaylogo": False})
        first = False
        parts.append(f'<div class="chart">{div}<p class="note">{html.escape(caption)}</p></div>')
    body = "\n".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">{len(runs)} run(s), generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>',
            _summary_table(runs),
            _leaderboard(runs),
            _steps_table(runs),
            *parts,
            _failures(runs),
            _machine(runs),
        ]
    )
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
    path.write_text(document, encoding="utf-8")


def _absent(heading: str) -> str:
    return {
        "Load test": "No load-test runs in this report (llmbench load).",
        "Quality against speed": "No evaluation of these configurations in the store yet (llmbench eval, or tasks: in a sweep).",
    }.get(heading, "No measured runs to plot.")


def _ok(runs: Sequence[ReportRun]) -> list[ReportRun]:
    return [run for run in runs if run.record.status == "ok" and run.record.kind == "generate"]


def _decode_bars(runs: Sequence[ReportRun]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for backend in sorted({run.record.backend for run in _ok(runs)}):
        chosen = [run for run in _ok(runs) if run.record.backend == backend]
        figure.add_bar(
            name=_label(backend),
            x=[_label(f"{run.label} {run.settings}".strip()) for run in chosen],
            y=[registry.DECODE.value(run.record.result) if run.record.result else None for run in chosen],
            error_y={"type": "data", "array": [_decode_std(run) for run in chosen]},
        )
    if not figure.data:
        return None
    figure.update_layout(barmode="group", yaxis_title="decode tokens/s", xaxis_title="model and settings")
    return figure


def _decode_std(run: ReportRun) -> float:
    return (registry.DECODE.value(run.record.result, "std") if run.record.result else None) or 0.0


def _box(runs: Sequence[ReportRun], metric: str) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for run in _ok(runs):
        measured = [rep for rep in run.repetitions if not rep.warmup]
        if metric == "ttft":
            shown = (registry.TTFT.shown(registry.TTFT.repetition_value(rep.metrics)) for rep in measured)
            values = [value for value in shown if value is not None]
        else:
            values = [gap * registry.ITL_GAPS.scale for rep in measured for gap in rep.itl_gaps]
        if values:
            figure.add_box(y=values, name=_label(run.name), boxpoints="outliers" if metric == "itl" else "all")
    if not figure.data:
        return None
    figure.update_layout(yaxis_title=f"{'TTFT' if metric == 'ttft' else 'inter-token gap'} (ms)", showlegend=False)
    return figure


def _memory_scatter(runs: Sequence[ReportRun]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    table = {row["id"]: row for row in rows(runs)}
    for backend in sorted({run.record.backend for run in _ok(runs)}):
        points = [
            (table[run.record.id], run)
            for run in _ok(runs)
            if run.record.backend == backend and table[run.record.id].get("decode_tok_s") is not None
        ]
        if not points:
            continue
        figure.add_scatter(
            name=_label(backend),
            mode="markers",
            marker={"size": 12},
            x=[row.get("peak_vram_mib") or row.get("peak_rss_mib") for row, _ in points],
            y=[row["decode_tok_s"] for row, _ in points],
            text=[_label(run.name) for _, run in points],
            hovertemplate="%{text}<br>%{x:.0f} MiB, %{y:.1f} tok/s<extra></extra>",
        )
    if not figure.data:
        return None
    figure.update_layout(xaxis_title="peak memory (MiB)", yaxis_title="decode tokens/s")
    return figure


def _load_curves(runs: Sequence[ReportRun]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for run in runs:
        result = run.record.result
        steps = result.steps if isinstance(result, LoadResult) else ()
        if not steps:
            continue
        x = [registry.OUTPUT_RATE.value(step) for step in steps]
        for stat in ("p50", "p99"):
            figure.add_scatter(
                name=_label(f"{run.name} e2e {stat}"),
                mode="lines+markers",
                x=x,
                y=[registry.E2E.value(step, stat) for step in steps],
            )
    if not figure.data:
        return None
    figure.update_layout(xaxis_title="output tokens/s (all requests)", yaxis_title="end-to-end latency (ms)")
    return figure


AXIS_TITLES = {"decode": "decode tokens/s", "memory": "peak memory (MiB)"}


def _axis_value(row: Row, axis: str) -> float | None:
    value = row.axis(axis)
    return value / 2**20 if axis == "memory" and value is not None else value


def _front_chart(board: Leaderboard, task: str, axis: str) -> Any:
    """Accuracy against one cost axis, the front's points as stars joined by a line; hover names each."""
    import plotly.graph_objects as go

    points = [
        (row, value)
        for row in board.rows
        if row.accuracy(task) is not None and (value := _axis_value(row, axis)) is not None
    ]
    if not points:
        return None
    figure = go.Figure()
    front = sorted(((row, value) for row, value in points if axis in row.front.get(task, ())), key=lambda p: p[1])
    others = [(row, value) for row, value in points if axis not in row.front.get(task, ())]
    styles: list[tuple[str, list[tuple[Row, float]], dict[str, Any], str]] = [
        ("other configurations", others, {"size": 11, "color": "#8a8a8a", "symbol": "circle"}, "markers"),
        ("Pareto front", front, {"size": 17, "color": "#d62728", "symbol": "star"}, "lines+markers"),
    ]
    for name, chosen, marker, mode in styles:
        if not chosen:
            continue
        symbols = [
            str(marker["symbol"])
            + ("-open" if axis == "memory" and row.memory is not None and row.memory.estimated else "")
            for row, _ in chosen
        ]
        figure.add_scatter(
            name=name,
            mode=mode,
            marker={**marker, "symbol": symbols},
            line={"color": "#d62728", "dash": "dot"},
            x=[value for _, value in chosen],
            y=[row.accuracy(task) for row, _ in chosen],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [_spread(row, task, high=True) for row, _ in chosen],
                "arrayminus": [_spread(row, task, high=False) for row, _ in chosen],
            },
            text=[_hover(row, task, axis) for row, _ in chosen],
            hovertemplate="%{text}<extra></extra>",
        )
    figure.update_layout(xaxis_title=AXIS_TITLES[axis], yaxis_title=f"accuracy on {_label(task)}")
    return figure


def _spread(row: Row, task: str, high: bool) -> float:
    score = row.scores[task]
    bound = score.ci95_high if high else score.ci95_low
    return abs(bound - score.accuracy) if bound is not None else 0.0


def _hover(row: Row, task: str, axis: str) -> str:
    score = row.scores[task]
    value = _axis_value(row, axis)
    shown = f"{value:,.1f} tok/s" if axis == "decode" else f"{value:,.0f} MiB" if value is not None else "-"
    if axis == "memory" and row.memory is not None and row.memory.estimated:
        shown += " (estimated by the plan)"
    tied = f"<br>tied with {len(score.tied_with)} other(s)" if score.tied_with else ""
    return (
        f"{_label(row.name)}<br>accuracy {score.accuracy:.3f} [{score.ci95_low or 0:.3f}, {score.ci95_high or 0:.3f}]"
        f" n={score.count}<br>{shown}{tied}"
    )


def _leaderboard(runs: Sequence[ReportRun]) -> str:
    board = leaderboard_of(runs)
    if board is None:
        return ""
    from llmbench.reports._text import LEADERBOARD_NOTE

    columns, table = leaderboard_table(board, brief=True)
    front_rows = [index for index, row in enumerate(board.rows) if any(row.front.values())]
    body = _table(table, columns).replace("<tr>", '<tr class="row">')
    return (
        '<h2>Leaderboard</h2><div id="leaderboard" data-front-rows="'
        + ",".join(str(i) for i in front_rows)
        + f'">{body}</div><p class="note">{html.escape(LEADERBOARD_NOTE)}</p>'
    )


def _summary_table(runs: Sequence[ReportRun]) -> str:
    table = rows(runs)
    used = {column.key: column for column in used_columns(table)}
    return _table(table, [used[key] for key in _SUMMARY_KEYS if key in used])


def _steps_table(runs: Sequence[ReportRun]) -> str:
    table = step_rows(runs)
    if not table:
        return ""
    return "<h2>Load steps</h2>" + _table(table, used_columns(table, STEP_COLUMNS))


def _table(table: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    extremes = {c.key: _extremes(table, c) for c in columns if c.better}
    out = ["<table><thead><tr>", *(f"<th>{html.escape(c.label)}</th>" for c in columns), "</tr></thead><tbody>"]
    for row in table:
        out.append("<tr>")
        for column in columns:
            out.append(_cell(row.get(column.key), column, extremes.get(column.key)))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _extremes(table: Sequence[dict[str, Any]], column: Column) -> tuple[float, float] | None:
    values = [row[column.key] for row in table if isinstance(row.get(column.key), (int, float))]
    if len(values) < 2 or min(values) == max(values):
        return None
    high, low = max(values), min(values)
    return (high, low) if column.better == "higher" else (low, high)


def _cell(value: Any, column: Column, extremes: tuple[float, float] | None) -> str:
    if value is None:
        return '<td class="num">-</td>' if column.numeric else "<td></td>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        css = "num"
        if extremes is not None:
            css += " best" if value == extremes[0] else " worst" if value == extremes[1] else ""
        return f'<td class="{css}">{value:,.{column.digits}f}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _failures(runs: Sequence[ReportRun]) -> str:
    failed = [run for run in runs if run.record.status != "ok"]
    if not failed:
        return ""
    out = ["<h2>Failed runs</h2>"]
    for run in failed:
        out.append(f"<h3>{html.escape(run.name)} ({html.escape(run.record.id)})</h3>")
        out.append(f"<p>{html.escape(run.record.error or run.record.status)}</p>")
        if run.record.stderr_tail:
            out.append(f"<pre>{html.escape(run.record.stderr_tail)}</pre>")
    return "\n".join(out)


def _machine(runs: Sequence[ReportRun]) -> str:
    seen: dict[str, dict[str, Any]] = {}
    for run in runs:
        env = run.record.environment or {}
        seen.setdefault(str(env.get("hostname")), env)
    out = ["<h2>Machine</h2>"]
    for env in seen.values():
        gpus = ", ".join(str(gpu.get("name")) for gpu in env.get("gpus") or []) or "no GPU"
        text = (
            f"{env.get('hostname')}: {env.get('cpu_model')}, {env.get('cpu_logical_cores')} logical cores, "
            f"{(env.get('ram_bytes') or 0) / 2**30:.1f} GiB RAM, {gpus}, {env.get('os')}, Python {env.get('python')}"
        )
        out.append(f"<p>{html.escape(text)}</p>")
        libraries = env.get("libraries") or {}
        out.append(
            "<p class='note'>"
            + html.escape(", ".join(f"{k} {v}" for k, v in libraries.items() if v != "not installed"))
            + "</p>"
        )
    return "\n".join(out)
