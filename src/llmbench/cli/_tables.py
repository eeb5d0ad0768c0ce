"""Rich tables for runs (human mode of the output layer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape

from llmbench.cli._output import console, human_bytes, number
from llmbench.measurement import registry
from llmbench.measurement.results import (
    EmbeddingResult,
    EvalResult,
    GenerationResult,
    LoadResult,
    PerplexityResult,
    RunResult,
    error_counts,
)
from llmbench.store import RunRecord


def _add_row(table: Any, *cells: str) -> None:
    """Add a row whose cells are data, not rich markup (model names may contain brackets)."""
    table.add_row(*(cell if cell.startswith("[bold]") or cell.startswith("[dim]") else escape(cell) for cell in cells))


def _shown(metric: registry.Metric, source: registry.Source | None, stat: str = "mean") -> str:
    """One value of a metric for people, in its unit (``-`` when not measured)."""
    return metric.format(metric.value(source, stat) if source is not None else None)


def print_record(record: RunRecord, environment: bool = False) -> None:
    """A stored run of any kind, as its own command prints it."""
    if record.kind == "eval":
        print_eval(record)
    elif record.kind == "load":
        print_load(record)
    elif record.kind == "perplexity":
        print_perplexity(record)
    elif record.kind == "embed":
        print_embedding(record)
    else:
        print_run(record)
    if environment:
        _print_environment(record.environment)


def print_run(record: RunRecord, environment: bool = False) -> None:
    from rich.table import Table

    out = console()
    result = record.result if isinstance(record.result, GenerationResult) else GenerationResult()
    config = record.config
    title = f"{record.model} on {record.backend}"
    out.print(
        f"[bold]{escape(title)}[/bold]  run {record.id}  {record.created_at}  status: {record.status}", soft_wrap=True
    )
    facts = [
        f"prompt {config.get('prompt_length', config.get('prompt_tokens'))} tok",
        f"generate {config.get('max_new_tokens')} tok" + (" (forced)" if _forced(config) else ""),
        f"threads {config.get('threads') or '-'}",
        f"load {number(result.load_s)} s",
        f"peak RSS {human_bytes(result.memory.peak_rss_bytes)}",
        f"on disk {human_bytes(result.model_size_bytes)}",
    ]
    if result.memory.peak_vram_allocated_bytes is not None:
        facts.append(f"peak VRAM {human_bytes(result.memory.peak_vram_allocated_bytes)}")
    out.print("  ".join(facts), soft_wrap=True)
    shown = [metric for metric in registry.GENERATION_SUMMARY if result.summary.get(metric.key)]
    if any(result.summary[metric.key].count for metric in shown):
        table = Table(show_edge=False)
        table.add_column("metric")
        for column in ("mean", "p50", "p90", "p99", "n"):
            table.add_column(column, justify="right")
        for metric in shown:
            count = result.summary[metric.key].count
            if count:
                stats = (_shown(metric, result, stat) for stat in ("mean", "p50", "p90", "p99"))
                _add_row(table, metric.title, *stats, str(count))
        out.print(table)
    if result.shortfall:
        out.print(f"[yellow]note:[/yellow] {escape(result.shortfall)}", soft_wrap=True)
    if result.sample_text:
        sample = " ".join(result.sample_text.split())
        out.print(f"[dim]output: {escape(sample[:160])}{'…' if len(sample) > 160 else ''}[/dim]")
    _print_error(record)
    if environment:
        _print_environment(record.environment)


def _forced(config: dict[str, Any]) -> bool:
    """Whether the run forced its output length (older runs say ``force_new_tokens``, newer ``allow_eos``)."""
    if "allow_eos" in config:
        return not config["allow_eos"]
    return bool(config.get("force_new_tokens"))


def _print_error(record: RunRecord) -> None:
    out = console()
    if record.error:
        out.print(f"[red]error:[/red] {escape(record.error)}", soft_wrap=True)
    if record.stderr_tail:
        out.print(f"[dim]its last output:\n{escape(record.stderr_tail)}[/dim]", soft_wrap=True)


def _print_environment(env: dict[str, Any]) -> None:
    out = console()
    out.print(
        escape(
            f"machine: {env.get('cpu_model')} ({env.get('cpu_logical_cores')} CPUs), "
            f"{human_bytes(env.get('ram_bytes'))} RAM, {env.get('os')}, Python {env.get('python')}"
        ),
        soft_wrap=True,
    )
    for gpu in env.get("gpus") or []:
        out.print(
            escape(f"gpu {gpu['index']}: {gpu['name']} {human_bytes(gpu['memory_bytes'])}, driver {gpu['driver']}")
        )
    libraries = env.get("backend_libraries") or {}
    if libraries:
        out.print(escape("libraries: " + ", ".join(f"{k} {v}" for k, v in libraries.items() if k != "system_info")))


def headline(result: RunResult | None) -> str:
    """What a run measured, in a few words, whatever its kind (the ``runs`` list)."""
    if isinstance(result, EvalResult):
        best = result.headline
        task = f" on {result.task}" if result.task else ""
        return f"accuracy {number(best.accuracy if best else None, 3)}{task}"
    if isinstance(result, PerplexityResult):
        return f"perplexity {number(result.perplexity, 3)}, {number(result.tokens_scored)} tokens"
    if isinstance(result, EmbeddingResult):
        return f"up to {_shown(registry.EMBED_TEXTS, result)} texts/s over {len(result.points)} point(s)"
    if isinstance(result, LoadResult):
        rate = max((registry.OUTPUT_RATE.value(step) or 0.0 for step in result.steps), default=None)
        failed = error_counts(result.errors)
        return f"{len(result.steps)} step(s), up to {number(rate, 1)} tok/s" + (f", failed: {failed}" if failed else "")
    if isinstance(result, GenerationResult) and result.summary.get(registry.ENCODE.key):
        return f"{registry.ENCODE.label} {_shown(registry.ENCODE, result)} {registry.ENCODE.unit}"
    return ""


def print_runs(records: Sequence[RunRecord]) -> None:
    from rich.table import Table

    table = Table(title=f"{len(records)} stored run(s)")
    columns = (
        "id",
        "created",
        "kind",
        "model",
        "backend",
        "status",
        "decode tok/s",
        "TTFT ms",
        "peak RSS MiB",
        "result",
    )
    numeric = ("decode tok/s", "TTFT ms", "peak RSS MiB")
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left", no_wrap=column != "model", overflow="fold")  # fmt: skip
    for record in records:
        _add_row(
            table,
            record.id,
            record.created_at.replace("T", " ")[5:16],
            record.kind,
            record.model,
            record.backend,
            record.status,
            _shown(registry.DECODE, record.result),
            _shown(registry.TTFT, record.result),
            _shown(registry.PEAK_RSS, record.result),
            headline(record.result),
        )
    console().print(table)


def print_inspections(inspections: Sequence[Any], extra: bool = True) -> None:
    from rich.table import Table

    from llmbench.models import INSPECT_FIELDS as FIELDS
    from llmbench.models import inspect_cell as cell

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
            f"measured {result.measured.what} in run {result.measured.run_id}: {human_bytes(result.measured.peak_bytes)} "
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

    result = record.result if isinstance(record.result, EvalResult) else EvalResult()
    config = record.config
    out = console()
    out.print(
        f"[bold]{escape(record.model)}[/bold] on {escape(record.backend)}: {escape(str(result.task))}, "
        f"{config.get('shots')}-shot{' (chat template)' if config.get('chat') else ''}  run {record.id}  "
        f"status: {record.status}",
        soft_wrap=True,
    )
    table = Table(show_edge=False)
    for column in ("normalization", "accuracy", "95% CI", "n", "ECE", "Brier"):
        table.add_column(column, justify="left" if column == "normalization" else "right")
    for how, stats in result.accuracy.items():
        _add_row(
            table,
            how,
            number(stats.accuracy, 3),
            f"{number(stats.ci95_low, 3)}-{number(stats.ci95_high, 3)}",
            str(stats.count if stats.count is not None else "-"),
            number(stats.ece, 3),
            number(stats.brier, 3),
        )
    out.print(table)
    facts = [
        f"{_shown(registry.EXAMPLES_RATE, result)} examples/s",
        f"peak RSS {human_bytes(result.memory.peak_rss_bytes)}",
    ]
    if result.resumed_from:
        facts.append(f"resumed after {result.resumed_from} stored examples")
    out.print("  ".join(facts), soft_wrap=True)
    _print_error(record)


def print_perplexity(record: RunRecord) -> None:
    result = record.result if isinstance(record.result, PerplexityResult) else PerplexityResult()
    out = console()
    out.print(
        f"[bold]{escape(record.model)}[/bold] on {escape(record.backend)}  run {record.id}  status: {record.status}",
        soft_wrap=True,
    )
    out.print(
        f"perplexity {_shown(registry.PERPLEXITY, result)}  (NLL {number(result.nll_per_token, 4)} nats/token, "
        f"{number(result.tokens_scored)} tokens in {number(result.windows)} window(s) of {number(result.window)}, "
        f"stride {number(result.stride)})",
        soft_wrap=True,
    )
    out.print(
        f"{_shown(registry.SCORING_RATE, result)} tokens/s scored  load {number(result.load_s)} s  "
        f"peak RSS {human_bytes(result.memory.peak_rss_bytes)}",
        soft_wrap=True,
    )
    _print_error(record)


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
    for column in ("run", "id", "status", "decode tok/s", "decode roofline", "TTFT ms", "peak RSS MiB", "error"):
        numeric = column in ("decode tok/s", "decode roofline", "TTFT ms", "peak RSS MiB")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for run, record in rows:
        if record is None:
            _add_row(table, run.describe(), "-", "not run", "-", "-", "-", "-", "")
            continue
        _add_row(
            table,
            run.describe(),
            record.id,
            record.status,
            _shown(registry.DECODE, record.result),
            _shown(registry.DECODE_ROOFLINE, record.result),
            _shown(registry.TTFT, record.result),
            _shown(registry.PEAK_RSS, record.result),
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


def print_load(record: RunRecord) -> None:
    from rich.table import Table

    result = record.result if isinstance(record.result, LoadResult) else LoadResult()
    table = Table(title=escape(f"load {record.id}: {record.model} ({record.backend})"))
    columns = ("step", "sent", "ok", "failed", "retries", "req/s", "tok/s", "peak tok/s", "TTFT p50/p99 ms",
               "ITL p50/p99 ms", "e2e p50/p99 ms", "queue p50 ms", "goodput req/s", "client", "status")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("step", "status") else "right")
    for step in result.steps:

        def spread(metric: registry.Metric, step: Any = step) -> str:
            return f"{_shown(metric, step, 'p50')}/{_shown(metric, step, 'p99')}"

        _add_row(
            table,
            step.label,
            str(step.sent),
            str(step.ok),
            str(step.failed) + (f" ({step.error_text})" if step.error_text else ""),
            str(step.retries),
            _shown(registry.REQUEST_RATE, step),
            _shown(registry.OUTPUT_RATE, step),
            _shown(registry.OUTPUT_PEAK, step),
            spread(registry.TTFT),
            spread(registry.ITL_GAPS),
            spread(registry.E2E),
            _shown(registry.QUEUE, step, "p50"),
            _shown(registry.GOODPUT, step),
            "BEHIND" if step.client_bound else "ok",
            step.step_status,
        )
    out = console()
    out.print(table)
    _print_error(record)


def print_embedding(record: RunRecord) -> None:
    """An embedding run: one row per (batch size, text length) point."""
    from rich.table import Table

    result = record.result if isinstance(record.result, EmbeddingResult) else EmbeddingResult()
    out = console()
    out.print(
        f"[bold]{escape(record.model)}[/bold] on {escape(record.backend)}  run {record.id}  status: {record.status}",
        soft_wrap=True,
    )
    out.print(
        f"pooling {result.pooling or '-'}  dimension {number(result.dimension)}  max length "
        f"{number(result.max_seq_length)} tok  threads {record.config.get('threads') or '-'}  "
        f"load {number(result.load_s)} s  peak RSS {human_bytes(result.memory.peak_rss_bytes)}"
        + (f"  peak VRAM {human_bytes(result.memory.peak_vram_bytes)}" if result.memory.peak_vram_bytes else ""),
        soft_wrap=True,
    )
    if result.points:
        table = Table(show_edge=False)
        latency = registry.BATCH_LATENCY
        for column in ("batch", "tokens/text", registry.EMBED_TEXTS.title, registry.EMBED_TOKENS.title,
                       f"{latency.short} p50 ({latency.unit})", f"{latency.short} p99 ({latency.unit})", "n"):  # fmt: skip
            table.add_column(column, justify="right")
        for point in result.points:
            _add_row(
                table,
                str(point.batch_size),
                number(point.tokens_per_text, 1),
                _shown(registry.EMBED_TEXTS, point),
                _shown(registry.EMBED_TOKENS, point),
                _shown(latency, point, "p50"),
                _shown(latency, point, "p99"),
                str(point.batches),
            )
        out.print(table)
    _print_error(record)
