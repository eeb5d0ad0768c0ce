"""Rich tables for runs (human mode of the output layer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmbench.cli._output import console, human_bytes, milliseconds, number
from llmbench.store import RunRecord

# (metric key in the summary, label, formatter of one value)
_ROWS: tuple[tuple[str, str, str], ...] = (
    ("ttft_s", "time to first token (ms)", "ms"),
    ("prefill_tok_s", "prefill (tok/s)", "num"),
    ("decode_tok_s", "decode (tok/s)", "num"),
    ("itl_s", "inter-token latency (ms)", "ms"),
    ("itl_gap_s", "inter-token gaps, pooled (ms)", "ms"),
    ("e2e_s", "end-to-end latency (ms)", "ms"),
    ("e2e_tok_s", "end-to-end (tok/s)", "num"),
    ("output_tokens", "output tokens", "int"),
)


def _fmt(kind: str, value: Any) -> str:
    if value is None:
        return "-"
    if kind == "int" and float(value).is_integer():
        return number(int(value))
    return milliseconds(value) if kind == "ms" else number(value)


def print_run(record: RunRecord, environment: bool = False) -> None:
    from rich.table import Table

    out = console()
    metrics = record.metrics or {}
    config = record.config
    title = f"{record.model} on {record.backend}"
    out.print(f"[bold]{title}[/bold]  run {record.id}  {record.created_at}  status: {record.status}", soft_wrap=True)
    facts = [
        f"prompt {config.get('prompt_length', config.get('prompt_tokens'))} tok",
        f"generate {config.get('max_new_tokens')} tok" + (" (forced)" if config.get("force_new_tokens") else ""),
        f"threads {config.get('threads') or '-'}",
        f"load {number(metrics.get('load_s'))} s",
        f"peak RSS {human_bytes(metrics.get('peak_rss_bytes'))}",
        f"on disk {human_bytes(metrics.get('model_size_bytes'))}",
    ]
    if metrics.get("peak_vram_allocated_bytes") is not None:
        facts.append(f"peak VRAM {human_bytes(metrics['peak_vram_allocated_bytes'])}")
    out.print("  ".join(facts), soft_wrap=True)
    summary = metrics.get("summary") or {}
    if summary:
        table = Table(show_edge=False)
        table.add_column("metric")
        for column in ("mean", "p50", "p90", "p99", "n"):
            table.add_column(column, justify="right")
        for key, label, kind in _ROWS:
            stats = summary.get(key)
            if not stats or not stats.get("count"):
                continue
            table.add_row(
                label, *(_fmt(kind, stats.get(c)) for c in ("mean", "p50", "p90", "p99")), str(stats["count"])
            )
        out.print(table)
    if metrics.get("sample_text"):
        sample = " ".join(str(metrics["sample_text"]).split())
        out.print(f"[dim]output: {sample[:160]}{'…' if len(sample) > 160 else ''}[/dim]", markup=True)
    if record.error:
        out.print(f"[red]error:[/red] {record.error}")
    if environment:
        env = record.environment
        out.print(
            f"machine: {env.get('cpu_model')} ({env.get('cpu_logical_cores')} CPUs), "
            f"{human_bytes(env.get('ram_bytes'))} RAM, {env.get('os')}, Python {env.get('python')}"
        )
        for gpu in env.get("gpus") or []:
            out.print(f"gpu {gpu['index']}: {gpu['name']} {human_bytes(gpu['memory_bytes'])}, driver {gpu['driver']}")
        libraries = env.get("backend_libraries") or {}
        if libraries:
            out.print("libraries: " + ", ".join(f"{k} {v}" for k, v in libraries.items() if k != "system_info"))


def print_runs(records: Sequence[RunRecord]) -> None:
    from rich.table import Table

    table = Table(title=f"{len(records)} stored run(s)")
    for column in ("id", "created", "model", "backend", "status", "decode tok/s", "TTFT ms", "peak RSS"):
        numeric = column in ("decode tok/s", "TTFT ms", "peak RSS")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=column != "model", overflow="fold")
    for record in records:
        summary = (record.metrics or {}).get("summary") or {}
        table.add_row(
            record.id,
            record.created_at.replace("T", " ")[5:16],
            record.model,
            record.backend,
            record.status,
            number((summary.get("decode_tok_s") or {}).get("mean")),
            milliseconds((summary.get("ttft_s") or {}).get("mean")),
            human_bytes((record.metrics or {}).get("peak_rss_bytes")),
        )
    console().print(table)
