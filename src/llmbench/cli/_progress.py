"""A progress bar over a run's phases, shown on stderr in human mode only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from llmbench.harness import ProgressCallback


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


@contextmanager
def rate_progress(enabled: bool, label: str, unit: str) -> Iterator[Callable[[int, int, float], None]]:
    """A bar updated as ``(done, total, rate)``, showing the rate in ``unit``/s."""
    if not enabled:
        yield lambda done, total, rate: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from llmbench.cli._output import console

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    ) as bar:
        task: Any = bar.add_task(label, total=None, rate="")

        def update(done: int, total: int, rate: float) -> None:
            bar.update(task, completed=done, total=total, rate=f"{rate:.1f} {unit}/s" if rate else "")

        yield update


def _bar(*middle: Any, end: Any = None) -> Any:
    """A transient rich progress display on stderr: description, bar, N/M, ``middle``, then ``end``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from llmbench.cli._output import console

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *middle,
        end if end is not None else TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    )


class _SweepBar:
    """Sweep progress: a bar over runs with an ETA, and a line with the current run's phase."""

    def __init__(self, bar: Any, total: int) -> None:
        self.bar = bar
        self.runs = bar.add_task("sweep", total=total, phase="")
        self.current: Any = bar.add_task("", total=None, phase="", visible=False)
        self.running = 0

    def run_started(self, run: Any) -> None:
        self.running += 1
        label = run.describe() if self.running == 1 else f"{self.running} runs in flight"
        self.bar.update(self.current, description=label, phase="starting", visible=True)

    def run_phase(self, run: Any, phase: str, done: int, total: int) -> None:
        label = {"load": "loading", "warmup": "warming up", "measure": "measuring"}.get(phase, phase)
        self.bar.update(self.current, description=run.describe(), phase=f"{label} {done}/{total}")

    def run_done(self, run: Any, record: Any) -> None:
        self.running -= 1
        self.bar.advance(self.runs)
        self.bar.update(self.current, visible=self.running > 0)


@contextmanager
def sweep_progress(enabled: bool, total: int) -> Iterator[Any]:
    """A :class:`~llmbench.sweep.SweepEvents` that draws on stderr (None when disabled)."""
    if not enabled:
        yield None
        return
    from rich.progress import TextColumn, TimeRemainingColumn

    with _bar(TextColumn("{task.fields[phase]}"), end=TimeRemainingColumn()) as bar:
        yield _SweepBar(bar, total)


@contextmanager
def load_progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A bar per load step: requests finished (of the planned count, when there is one)."""
    if not enabled:
        yield None
        return
    with _bar() as bar:
        tasks: dict[str, Any] = {}

        def update(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield update
