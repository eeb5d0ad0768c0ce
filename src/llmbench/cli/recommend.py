"""``llmbench recommend``: the configurations on the front that meet a budget, ranked, with reasons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from llmbench.cli._output import console, emit_json
from llmbench.cli.leaderboard import load_board, selection_options

if TYPE_CHECKING:
    from llmbench.selection import Recommendation


@click.command("recommend")
@selection_options
@click.option("--task", help="The task quality is judged on (name, file or folder; default: the most evaluated).")
@click.option("--max-memory", metavar="SIZE", help="Peak memory at most this (8GB, 512MiB).")
@click.option("--min-decode-tps", type=float, help="Decode speed at least this many tokens per second.")
@click.option("--max-ttft-ms", type=float, help="Time to first token at most this many milliseconds.")
@click.option("--max-cost", type=float, help="Cost per million output tokens at most this (needs a price).")
@click.option("--min-accuracy", type=float, help="Accuracy on the task at least this (0 to 1).")
@click.option(
    "--weights",
    metavar="AXIS=W,...",
    help="Ranking weights over accuracy, decode, ttft, memory, cost (default: accuracy=1).",
)
@click.option("--format", "output_format", type=click.Choice(("table", "json")), default="table", show_default=True)
def recommend_command(
    sweeps: tuple[str, ...],
    price_per_hour: float | None,
    price_per_m_input: float | None,
    price_per_m_output: float | None,
    normalization: str | None,
    alpha: float,
    task: str | None,
    max_memory: str | None,
    min_decode_tps: float | None,
    max_ttft_ms: float | None,
    max_cost: float | None,
    min_accuracy: float | None,
    weights: str | None,
    output_format: str,
) -> None:
    """Recommend configurations: on the Pareto front, within the constraints, ranked, each with why.

    Each pick says which constraint binds (the one with the least headroom) and what it trades
    against the next pick, including whether their accuracies are tied (McNemar, Holm). What was
    never measured is listed with the exact command that measures it; a missing value is never
    read as zero. An empty answer names the constraint that emptied it.

    \b
    Examples:
      llmbench recommend
      llmbench recommend --max-memory 8GB --min-decode-tps 20 --max-ttft-ms 500
      llmbench recommend --task sports_understanding --weights accuracy=1,decode=0.5 --format json
      llmbench recommend --price-per-hour 0.8 --max-cost 5
    """
    from llmbench.errors import InvalidOptionError
    from llmbench.selection import Constraints, recommend

    memory = _size(max_memory) if max_memory is not None else None
    if max_cost is not None and not (price_per_hour or price_per_m_input or price_per_m_output):
        raise InvalidOptionError(
            "--max-cost needs a price", "add --price-per-hour (or --price-per-m-input / --price-per-m-output)"
        )
    constraints = Constraints(task, memory, min_decode_tps, max_ttft_ms, max_cost, min_accuracy)
    parsed = _weights(weights)
    board = load_board(sweeps, price_per_hour, price_per_m_input, price_per_m_output, normalization, alpha)
    answer = recommend(board, constraints, parsed)
    if output_format == "json":
        emit_json(as_json(answer))
        return
    _print(answer)


def _size(text: str) -> int:
    from llmbench.system.cache import parse_size

    return parse_size(text)


def _weights(text: str | None) -> dict[str, float] | None:
    from llmbench.errors import InvalidOptionError
    from llmbench.selection import WEIGHT_NAMES

    if text is None:
        return None
    found: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, raw = part.partition("=")
        name = name.strip()
        try:
            value = float(raw) if sep else float("nan")
        except ValueError:
            value = float("nan")
        if name not in WEIGHT_NAMES or not value >= 0:
            raise InvalidOptionError(
                f"cannot read weight {part!r}", f"write AXIS=W with AXIS one of {', '.join(WEIGHT_NAMES)} and W >= 0"
            )
        found[name] = value
    if not any(found.values()):
        raise InvalidOptionError("every weight is zero", "give one a positive weight, e.g. --weights accuracy=1")
    return found


def as_json(answer: Recommendation) -> dict[str, Any]:
    from dataclasses import asdict

    from llmbench.selection import Leaderboard, flat

    def pick(p: Any) -> dict[str, Any]:
        board = Leaderboard((p.row,), tuple(p.row.scores))
        return {
            "rank": p.rank,
            "name": p.row.name,
            "score": p.score,
            "binding": p.binding,
            "versus_next": p.versus_next,
            "configuration": {
                "model": p.row.configuration.model,
                "backend": p.row.configuration.backend,
                "settings": p.row.configuration.values(),
            },
            "row": {k: v for k, v in flat(board, p.row).items() if not k.startswith(("standing:", "tied:"))},
            "tied_with": list(p.row.scores[answer.task].tied_with) if answer.task in p.row.scores else [],
            "memory_estimated": p.row.memory.estimated if p.row.memory else None,
        }

    return {
        "task": answer.task,
        "constraints": asdict(answer.constraints),
        "axes": list(answer.axes),
        "weights": dict(answer.weights),
        "picks": [pick(p) for p in answer.picks],
        "excluded": [{"name": name, "why": why} for name, why in answer.excluded],
        "unmeasured": [asdict(item) for item in answer.unmeasured],
        "empty_reason": answer.empty_reason,
    }


def _print(answer: Recommendation) -> None:
    from rich.markup import escape
    from rich.table import Table

    from llmbench.selection import show

    out = console()
    if answer.empty_reason is not None:
        out.print(escape(f"No recommendation: {answer.empty_reason}."))
    else:
        table = Table(title=escape(f"recommended for {answer.task} ({len(answer.picks)} on the front)"))
        for column in ("#", "configuration", "accuracy", "decode", "TTFT", "memory", "why"):
            table.add_column(column, justify="right" if column in ("#",) else "left", overflow="fold")
        for p in answer.picks:
            row = p.row
            score = row.scores[answer.task or ""]
            memory = show("memory", row.axis("memory")) + (" (plan)" if row.memory and row.memory.estimated else "")
            why = p.binding + (f"\n{p.versus_next}" if p.versus_next else "")
            table.add_row(
                str(p.rank),
                escape(row.name),
                f"{score.accuracy:.3f} (n={score.count})",
                show("decode", row.decode_tok_s),
                show("ttft", row.ttft_ms),
                escape(memory),
                escape(why),
            )
        out.print(table)
    for name, why in answer.excluded:
        out.print(escape(f"  not picked: {name}: {why}"))
    if answer.unmeasured:
        out.print("Never measured (missing is missing, not zero):")
        for item in answer.unmeasured:
            out.print(escape(f"  {item.name}: {item.missing}\n    {item.command}"))
