"""``llmbench doctor``: what this machine can run."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("doctor")
@format_option
def doctor_command(output_format: str) -> None:
    """Check GPUs (CUDA, ROCm, MPS), CPU features, memory, disk, backends and kernels.

    Each finding says what was found and, where something can be done, how.

    \b
    Examples:
      llmbench doctor
      llmbench doctor --format json
    """
    from dataclasses import asdict

    from llmbench.backends import backend_findings
    from llmbench.system.doctor import diagnose

    findings = diagnose(backend_findings)
    if output_format == "json":
        emit_json([asdict(finding) for finding in findings])
        return
    from rich.markup import escape
    from rich.table import Table

    from llmbench.cli._output import console

    colours = {"ok": "green", "warn": "yellow", "missing": "red", "info": "cyan"}
    table = Table(title="llmbench doctor")
    for column in ("area", "status", "finding", "hint"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        colour = colours[finding.status]
        table.add_row(
            finding.area, f"[{colour}]{finding.status}[/{colour}]", escape(finding.detail), escape(finding.hint or "")
        )
    console().print(table)
