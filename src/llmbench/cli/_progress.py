"""A progress bar over a run's phases, shown on stderr in human mode only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmbench.scenarios.single_run import ProgressCallback


@contextmanager
def run_progress(enabled: bool, description: str) -> Iterator[ProgressCallback]:
    if not enabled:
        yield lambda phase, done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from llmbench.cli._output import console

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    ) as bar:
        task: Any = bar.add_task(description, total=None)

        def update(phase: str, done: int, total: int) -> None:
            label = {"load": "loading", "warmup": "warming up", "measure": "measuring"}.get(phase, phase)
            bar.update(task, description=f"{description}: {label}", completed=done, total=total)

        yield update
