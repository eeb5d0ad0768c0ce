"""Running one planned run in a fresh child process, with a deadline and a memory limit.

The child is started from a fork server (``multiprocessing``'s ``forkserver``: a clean process,
started once, that has imported llmbench and the sweep's runtime libraries), so each run gets a
fresh address space without paying the imports again. The parent blocks in
``multiprocessing.connection.wait`` on the child's pipe and its exit sentinel; it wakes up only
for a message, the child's exit, the deadline, or (with a memory limit) every
:data:`MEMORY_POLL_S` to read the child's resident memory.

Whatever happens in the child (a segfault, ``os._exit``, an import error, an out-of-memory kill, a
hang) comes back as a :class:`~llmbench.store.RunRecord`: the child's own result, or a failed run
whose error names the cause, with the tail of the child's output.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from llmbench.store import RunRecord
from llmbench.sweep._plan import PlannedRun

MEMORY_POLL_S = 0.1
"""How often the parent reads the child's resident memory when a memory limit is set."""
STDERR_TAIL_CHARS = 4000
_EXIT_GRACE_S = 10.0

PhaseCallback = Callable[[str, int, int], None]
_BACKEND_MODULES = {
    "llama.cpp": ["llmbench.backends.llama_cpp"],
    "transformers": ["llmbench.backends.transformers", "torch", "transformers"],
}


def process_context(backends: Iterable[str] = ()) -> Any:
    """A fork-server context that has preloaded the sweep's code and its backends' libraries."""
    context = multiprocessing.get_context("forkserver")
    preload = ["llmbench.sweep._task", "llmbench.scenarios.single_run"]
    for backend in backends:
        preload.extend(_BACKEND_MODULES.get(backend, []))
    context.set_forkserver_preload(preload)
    return context


def run_isolated(
    run: PlannedRun,
    *,
    timeout_s: float,
    memory_limit: int | None = None,
    on_phase: PhaseCallback | None = None,
    context: Any = None,
) -> RunRecord:
    """Run ``run`` in a fresh child process and return its record (a failed one if it died)."""
    from llmbench.sweep._task import failed_record

    context = context or process_context([run.backend])
    with tempfile.TemporaryDirectory(prefix="llmbench-run-") as folder:
        log_path = Path(folder) / "output.log"
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child_main, args=(sender, run, str(log_path)), name=f"llmbench-{run.key}")
        started = time.monotonic()
        process.start()
        sender.close()
        try:
            outcome = _supervise(process, receiver, started + timeout_s, memory_limit, on_phase or _ignore)
            if outcome is None:
                outcome = f"timed out after {timeout_s:g} s (killed)"
        except BaseException:
            _kill_tree(process.pid)
            process.join()
            raise
        finally:
            receiver.close()
        if isinstance(outcome, RunRecord):
            return outcome
        return failed_record(run, outcome, _tail(log_path), exit_code=process.exitcode)


def _ignore(phase: str, done: int, total: int) -> None:
    return None


def _supervise(
    process: Any, receiver: Connection, deadline: float, memory_limit: int | None, on_phase: PhaseCallback
) -> RunRecord | str | None:
    """Wait for the child's result; return it, the cause when it died without one, None on timeout."""
    watched: list[Any] = [receiver, process.sentinel]
    result: RunRecord | None = None
    error: str | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _kill_tree(process.pid)
            process.join()
            return None
        ready = wait(watched, timeout=min(remaining, MEMORY_POLL_S) if memory_limit else remaining)
        if receiver in ready:
            try:
                message = receiver.recv()
            except (EOFError, OSError):
                watched.remove(receiver)  # the child closed its end; its exit follows
                continue
            if message[0] == "phase":
                on_phase(*message[1:])
            elif message[0] == "result":
                result = message[1]
            elif message[0] == "error":
                error = message[1]
        if process.sentinel in ready:
            process.join()
            break
        if result is not None or error is not None:
            # The answer is in; give the child a moment to exit on its own.
            process.join(_EXIT_GRACE_S)
            if process.is_alive():
                _kill_tree(process.pid)
                process.join()
            break
        if memory_limit:
            used = _tree_rss(process.pid)
            if used > memory_limit:
                _kill_tree(process.pid)
                process.join()
                return f"exceeded the memory limit: resident memory {_mib(used)} > {_mib(memory_limit)} (killed)"
    if result is not None:
        return result
    return error if error is not None else _exit_cause(process.exitcode)


def _exit_cause(code: int | None) -> str:
    if code is None:
        return "ended without a result"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        if -code == signal.SIGKILL:
            return f"killed by {name} (the kernel's out-of-memory killer sends it)"
        return f"crashed with {name}"
    return f"exited with code {code} before reporting a result"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def _kill_tree(pid: int | None) -> None:
    import psutil

    if pid is None:
        return
    try:
        root = psutil.Process(pid)
        processes = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _tail(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - STDERR_TAIL_CHARS))
            text = handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


# -- the child side ------------------------------------------------------------------------------


def _child_main(sender: Connection, run: PlannedRun, log_path: str) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    import faulthandler

    faulthandler.enable()  # a segfault leaves its Python stack in the run's output tail

    def phase(name: str, done: int, total: int) -> None:
        sender.send(("phase", name, done, total))

    try:
        from llmbench.sweep._task import execute

        record = execute(run, phase)
        sender.send(("result", record))
    except BaseException as exc:  # an import error, a bug: reported, the parent stores the cause
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        sender.close()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a ``kill -9`` of the sweep)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)
