"""``llmbench backends``: which runtimes are registered, installed and able to do what."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("backends")
@format_option
def backends_command(output_format: str) -> None:
    """List registered backends, whether they are installed, and their capabilities.

    The JSON form also lists each backend's pip extra and the -o options it takes.

    \b
    Examples:
      llmbench backends
      llmbench backends --format json
    """
    from llmbench.backends import backend_names, get_backend
    from llmbench.cli._output import console
    from llmbench.errors import LLMBenchError

    rows = []
    for name in backend_names():
        try:
            cls = get_backend(name)
        except LLMBenchError as exc:
            rows.append({"name": name, "installed": False, "problem": str(exc)})
            continue
        try:
            cls.check_available()
            installed, problem = True, None
        except LLMBenchError as exc:
            installed, problem = False, str(exc)
        caps = cls.capabilities()
        rows.append(
            {
                "name": name,
                "installed": installed,
                "formats": sorted(cls.formats),
                "stream": caps.stream,
                "chat": caps.chat,
                "score": caps.score,
                "embed": caps.embed,
                "pip_extra": cls.pip_extra,
                "options": sorted(cls.known_options),
                "problem": problem,
            }
        )
    if output_format == "json":
        emit_json(rows)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Backends")
    for column in ("name", "installed", "formats", "stream", "chat", "score", "embed", "note"):
        table.add_column(column)
    for row in rows:
        mark = {True: "yes", False: "no"}
        table.add_row(
            escape(str(row["name"])),
            mark[bool(row["installed"])],
            ", ".join(row.get("formats", [])),  # type: ignore[arg-type]
            *(mark[bool(row.get(key))] for key in ("stream", "chat", "score", "embed")),
            escape(str(row["problem"] or "")),
        )
    console().print(table)
