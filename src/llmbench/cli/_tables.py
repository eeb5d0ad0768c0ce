"""Rich tables for runs (human mode of the output layer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape

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


def _add_row(table: Any, *cells: str) -> None:
    """Add a row whose cells are data, not rich markup (model names may contain brackets)."""
    from rich.markup import escape

    table.add_row(*(cell if cell.startswith("[bold]") or cell.startswith("[dim]") else escape(cell) for cell in cells))


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
    out.print(
        f"[bold]{escape(title)}[/bold]  run {record.id}  {record.created_at}  status: {record.status}", soft_wrap=True
    )
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
            _add_row(
                table, label, *(_fmt(kind, stats.get(c)) for c in ("mean", "p50", "p90", "p99")), str(stats["count"])
            )
        out.print(table)
    if metrics.get("sample_text"):
        sample = " ".join(str(metrics["sample_text"]).split())
        out.print(f"[dim]output: {escape(sample[:160])}{'…' if len(sample) > 160 else ''}[/dim]")
    if record.error:
        out.print(f"[red]error:[/red] {escape(record.error)}")
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
        _add_row(
            table,
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


def print_inspections(inspections: Sequence[Any], extra: bool = True) -> None:
    from rich.table import Table

    from llmbench.models._inspect import FIELDS, cell

    table = Table(title="Model specs", show_lines=False)
    table.add_column("field", style="bold")
    for inspection in inspections:
        table.add_column(escape(inspection.spec.name), overflow="fold")
    rows = [inspection.as_dict() for inspection in inspections]
    for key, label in FIELDS:
        _add_row(table, label, *(cell(row.get(key)) for row in rows))
    _add_row(table, "size on disk", *(human_bytes(row["size_bytes"]) for row in rows))
    for key, label in (
        ("total", "parameters"),
        ("embedding", "  embedding"),
        ("non_embedding", "  non-embedding"),
        ("trainable_adapter", "  adapter (trainable)"),
        ("method", "  counted from"),
    ):
        _add_row(table, label, *(cell(row["parameters"].get(key, row["parameters"].get("error"))) for row in rows))
    adapters = [row.get("adapter") or {} for row in rows]
    if any(adapters):
        for key, label in (
            ("peft_type", "adapter type"),
            ("rank", "  rank r"),
            ("alpha", "  alpha"),
            ("dropout", "  dropout"),
            ("target_modules", "  target modules"),
            ("base_model", "  base model"),
        ):
            _add_row(table, label, *(cell(adapter.get(key)) for adapter in adapters))
    if extra:
        keys = sorted({key for row in rows for key in row["extra"]})
        for key in keys:
            _add_row(table, f"[dim]{escape(key)}[/dim]", *(cell(row["extra"].get(key)) for row in rows))
    console().print(table)


def print_plan(result: Any) -> None:
    from rich.table import Table

    plan = result.plan
    request = plan.request
    table = Table(
        title=f"Memory plan: {escape(plan.model)} on {request.backend} ({plan.weights_format}, "
        f"{request.context:,} tokens, batch {request.batch}, {request.purpose})"
    )
    table.add_column("term")
    table.add_column("size", justify="right")
    table.add_column("how", overflow="fold")
    for term in plan.terms:
        _add_row(table, term.name, human_bytes(term.bytes), term.formula)
    _add_row(table, "[bold]total[/bold]", f"[bold]{human_bytes(plan.total)}[/bold]", "")
    out = console()
    out.print(table)
    out.print(f"KV cache per token: {human_bytes(plan.kv_bytes_per_token())}")
    if plan.device_bytes is not None:
        where = "RAM" if request.device == "cpu" else "GPU memory"
        verdict = "fits" if plan.fits else "does NOT fit"
        out.print(
            f"{verdict} in {human_bytes(plan.device_bytes)} of {where} ({plan.total / plan.device_bytes:.0%} of it)"
        )
    if result.measured is not None:
        out.print(
            f"measured peak RSS in run {result.measured.run_id}: {human_bytes(result.measured.peak_bytes)} "
            f"(estimate error {result.error:+.1%})"
        )
    for note in plan.notes:
        out.print(f"[dim]{escape(note)}[/dim]")


def print_cache(scan: Any, entries: Sequence[Any]) -> None:
    import datetime

    from rich.table import Table

    def when(stamp: float | None) -> str:
        if stamp is None:
            return "-"
        return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")

    where = f" in {scan.hf_cache_dir}" if scan.hf_cache_dir else ""
    table = Table(title=escape(f"{len(entries)} cached model(s){where}"))
    for column in ("kind", "name", "size", "revisions", "refs", "last accessed", "last modified"):
        table.add_column(column, justify="right" if column in ("size", "revisions") else "left", overflow="fold")
    for entry in entries:
        size = human_bytes(entry.size_bytes)
        if entry.incomplete_bytes:
            size += f" (+{human_bytes(entry.incomplete_bytes)} incomplete)"
        _add_row(
            table,
            entry.kind,
            entry.name,
            size,
            str(len(entry.revisions)) if entry.kind != "gguf" else "-",
            ", ".join(entry.refs) or "-",
            when(entry.last_accessed),
            when(entry.last_modified),
        )
    out = console()
    out.print(table)
    out.print(f"total: {human_bytes(sum(entry.size_bytes for entry in entries))}")
    for warning in scan.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def print_eval(record: RunRecord) -> None:
    from rich.table import Table

    metrics = record.metrics or {}
    config = record.config
    out = console()
    out.print(
        f"[bold]{escape(record.model)}[/bold] on {record.backend}: {escape(str(metrics.get('task')))}, "
        f"{config.get('shots')}-shot{' (chat template)' if config.get('chat') else ''}  run {record.id}  "
        f"status: {record.status}",
        soft_wrap=True,
    )
    table = Table(show_edge=False)
    for column in ("normalization", "accuracy", "95% CI", "n", "ECE", "Brier"):
        table.add_column(column, justify="left" if column == "normalization" else "right")
    for how, stats in (metrics.get("accuracy") or {}).items():
        _add_row(
            table,
            how,
            number(stats["accuracy"], 3),
            f"{number(stats['ci95_low'], 3)}-{number(stats['ci95_high'], 3)}",
            str(stats["count"]),
            number(stats["ece"], 3),
            number(stats["brier"], 3),
        )
    out.print(table)
    facts = [
        f"{number(metrics.get('examples_per_s'))} examples/s",
        f"peak RSS {human_bytes(metrics.get('peak_rss_bytes'))}",
    ]
    if metrics.get("resumed_from"):
        facts.append(f"resumed after {metrics['resumed_from']} stored examples")
    out.print("  ".join(facts), soft_wrap=True)
    if record.error:
        out.print(f"[red]error:[/red] {escape(record.error)}")


def print_sweep_plan(plan: Any, done: set[str]) -> None:
    from rich.table import Table

    todo = sum(1 for run in plan.runs if run.key not in done)
    table = Table(title=escape(f"sweep {plan.id}: {len(plan.runs)} run(s), {todo} to run"))
    for column in ("#", "key", "model", "backend", "settings", "stored"):
        table.add_column(column, overflow="fold")
    for index, run in enumerate(plan.runs, 1):
        settings = " ".join(f"{k}={v}" for k, v in run.choices.items()) or "-"
        _add_row(table, str(index), run.key, run.label, run.backend, settings, "yes" if run.key in done else "no")
    console().print(table)


def print_sweep(sweep_id: str, rows: Sequence[tuple[Any, RunRecord | None]], skipped: int) -> None:
    from rich.table import Table

    failed = sum(1 for _, record in rows if record is not None and record.status != "ok")
    title = f"sweep {sweep_id}: {len(rows)} run(s), {skipped} already stored, {failed} failed"
    table = Table(title=escape(title))
    for column in ("run", "id", "status", "decode tok/s", "TTFT ms", "peak RSS", "error"):
        numeric = column in ("decode tok/s", "TTFT ms", "peak RSS")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for run, record in rows:
        if record is None:
            _add_row(table, run.describe(), "-", "not run", "-", "-", "-", "")
            continue
        summary = (record.metrics or {}).get("summary") or {}
        _add_row(
            table,
            run.describe(),
            record.id,
            record.status,
            number((summary.get("decode_tok_s") or {}).get("mean")),
            milliseconds((summary.get("ttft_s") or {}).get("mean")),
            human_bytes((record.metrics or {}).get("peak_rss_bytes")),
            (record.error or "")[:120],
        )
    out = console()
    out.print(table)
    out.print(f"Report: llmbench report --sweep {sweep_id} --out report.html")


def print_sweeps(rows: Sequence[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"{len(rows)} stored sweep(s)")
    for column in ("id", "created", "name", "planned", "ok", "failed", "source"):
        table.add_column(column, justify="right" if column in ("planned", "ok", "failed") else "left", overflow="fold")
    for row in rows:
        _add_row(
            table,
            row["id"],
            row["created_at"].replace("T", " ")[5:16],
            row["name"] or "-",
            str(row["planned"]),
            str(row["ok"]),
            str(row["failed"]),
            row["source"] or "-",
        )
    console().print(table)


def print_load(record: RunRecord, steps: Sequence[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=escape(f"load {record.id}: {record.model} ({record.backend})"))
    columns = ("step", "sent", "ok", "failed", "req/s", "tok/s", "peak tok/s", "TTFT p50/p99 ms", "ITL p50/p99 ms",
               "e2e p50/p99 ms", "queue p50 ms", "goodput req/s", "client")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in steps:
        _add_row(
            table,
            step["step"],
            str(step["sent"]),
            str(step["ok"]),
            str(step["failed"]) + (f" {step['errors']}" if step["errors"] else ""),
            number(step["req_s"]),
            number(step["tok_s"], 1),
            number(step["tok_s_peak"], 1),
            f"{milliseconds(step['ttft_p50'])}/{milliseconds(step['ttft_p99'])}",
            f"{milliseconds(step['itl_p50'])}/{milliseconds(step['itl_p99'])}",
            f"{milliseconds(step['e2e_p50'])}/{milliseconds(step['e2e_p99'])}",
            milliseconds(step["queue_p50"]),
            number(step["goodput"]),
            "BEHIND" if step["client_bound"] else "ok",
        )
    out = console()
    out.print(table)
    if record.error:
        out.print(escape(record.error))
