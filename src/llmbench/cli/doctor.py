"""``llmbench doctor``: what this machine can run."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("doctor")
@click.option(
    "--calibrate",
    "calibrate_device",
    is_flag=False,
    flag_value="all",
    default=None,
    metavar="[DEVICE]",
    help="Measure memory bandwidth and matmul throughput (the roofline's ceilings) of cpu, cuda:N or every device"
    " (no value), store them and show them.",
)
@format_option
def doctor_command(calibrate_device: str | None, output_format: str) -> None:
    """Check GPUs (CUDA, ROCm, MPS), CPU features, memory, disk, backends and kernels.

    Each finding says what was found and, where something can be done, how. With --calibrate it
    measures this machine's ceilings instead (about a second on a CPU) and stores them: each
    generation run reports its decode and prefill speed as a fraction of them.

    \b
    Examples:
      llmbench doctor
      llmbench doctor --format json
      llmbench doctor --calibrate
      llmbench doctor --calibrate cuda:0 --format json
    """
    if calibrate_device is not None:
        _calibrate(calibrate_device, output_format)
        return
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


def _calibrate(device: str, output_format: str) -> None:
    from llmbench.measurement.fingerprint import gpus
    from llmbench.store import Store
    from llmbench.system.calibrate import calibrate, machine_key, normalise_device

    devices = ["cpu", *(f"cuda:{i}" for i, _ in enumerate(gpus()))] if device == "all" else [device]
    if device == "all" and len(devices) > 1:
        devices = [d for d in devices if d == "cpu" or _cuda_usable()]
    measured = [calibrate(normalise_device(name)) for name in devices]
    with Store() as store:
        for calibration in measured:
            store.save_calibration(machine_key(), calibration)
    if output_format == "json":
        emit_json([{"machine_key": machine_key(), **c.to_json()} for c in measured])
        return
    from rich.markup import escape
    from rich.table import Table

    from llmbench.cli._output import console

    table = Table(title=f"llmbench calibration of {machine_key()}")
    for column, justify in (("device", "left"), ("bandwidth (GB/s)", "right"), ("matmul (GFLOP/s)", "right"),
                            ("dtype", "left"), ("threads", "right"), ("method", "left")):  # fmt: skip
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for c in measured:
        table.add_row(
            c.device,
            f"{c.bandwidth_bytes_s / 1e9:,.1f}",
            f"{c.matmul_flops / 1e9:,.1f}",
            c.dtype,
            str(c.threads or "-"),
            escape(c.method),
        )
    console().print(table)


def _cuda_usable() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
