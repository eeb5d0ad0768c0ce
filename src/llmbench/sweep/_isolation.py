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

And whatever happens to the parent (a ``kill -9`` of the sweep), nothing of the run outlives it:

* a *guard*, a tiny process started once beside the fork server, reads a pipe that only this
  process writes; at the end of that pipe without a goodbye (this process was killed) it SIGKILLs
  the run in flight with all its descendants and removes this process's scratch folder, which
  holds every run's output file and the fork server's socket (otherwise in a ``pymp-*`` folder
  of multiprocessing's, which it then removes too);
* as a second line, the child drops the fork server's "alive" pipe that the fork server hands
  every child: holding it kept the fork server (the child's parent) alive after the sweep died,
  so the child's parent-death signal (``PR_SET_PDEATHSIG``) never fired. Now the fork server exits
  with the sweep, and the kernel kills the child;
* scratch folders of processes that are gone (their guard killed with them) are removed when the
  next one is made.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
    _guard()  # before the fork server starts: its socket goes into the guarded scratch folder
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
    guard = _guard()
    with tempfile.TemporaryDirectory(prefix="run-", dir=guard.scratch) as folder:
        log_path = Path(folder) / "output.log"
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child_main, args=(sender, run, str(log_path)), name=f"llmbench-{run.key}")
        started = time.monotonic()
        process.start()
        guard.watch(process.pid)
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
            guard.forget(process.pid)
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


# -- the guard: nothing of a run outlives a kill -9 of its sweep --------------------------------

_GUARD_CODE = """\
import shutil, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C or a hang-up of the terminal is the parent's
signal.signal(signal.SIGHUP, signal.SIG_IGN)
folders, watched = sys.argv[1:], set()
for line in sys.stdin:  # only the parent writes: "+PID" when a run starts, "-PID" when it has ended
    if line.strip() == "bye":  # a normal exit: the parent cleans up after itself
        sys.exit()
    pid = int(line)
    if pid > 0:
        watched.add(pid)
    else:
        watched.discard(-pid)
# The end of input without a goodbye: the parent was killed.
if watched:
    import psutil
    for pid in watched:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in tree:
            try:
                process.kill()
            except psutil.Error:
                pass
for folder in folders:
    shutil.rmtree(folder, ignore_errors=True)
"""
_SCRATCH_PREFIX = "llmbench-sweep-"
_MAX_SOCKET_FOLDER = 88
"""A Unix socket's path has at most 107 bytes; the fork server's (``listener-XXXXXXXX``) goes into
the scratch folder only if it fits."""


class _Guard:
    """This process's scratch folder, and the guard process that cleans up if this one is killed."""

    def __init__(self) -> None:
        import multiprocessing.util

        base = Path(tempfile.gettempdir())
        remove_stale_scratch(base)
        self.owner = os.getpid()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{self.owner}-", dir=base))
        _adopt_for_multiprocessing(self.scratch)
        # Where the fork server's socket lives: the scratch folder, or (under a long TMPDIR) multiprocessing's own.
        folders = {str(self.scratch), multiprocessing.util.get_temp_dir()}
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _GUARD_CODE, *sorted(folders)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(self.close)

    def watch(self, pid: int | None) -> None:
        if pid is not None:
            self._send(f"+{pid}\n")

    def forget(self, pid: int | None) -> None:
        if pid is not None:
            self._send(f"-{pid}\n")

    def _send(self, line: str) -> None:
        stdin = self.process.stdin
        with self._lock, contextlib.suppress(OSError, ValueError):  # the guard is gone: the second line holds
            if stdin is not None:
                stdin.write(line.encode())
                stdin.flush()

    def close(self) -> None:
        """At a normal exit: dismiss the guard, remove the scratch folder (multiprocessing removes its own)."""
        self._send("bye\n")
        with self._lock, contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        shutil.rmtree(self.scratch, ignore_errors=True)


_GUARD: _Guard | None = None
_GUARD_LOCK = threading.Lock()


def _guard() -> _Guard:
    """The guard of this process, started on first use (a forked copy of this process makes its own)."""
    global _GUARD
    with _GUARD_LOCK:
        if _GUARD is None or _GUARD.owner != os.getpid() or _GUARD.process.poll() is not None:
            _GUARD = _Guard()
        return _GUARD


def _adopt_for_multiprocessing(folder: Path) -> None:
    """Have multiprocessing keep its files (the fork server's socket) in ``folder``, if it has none yet.

    Its own ``pymp-*`` folder is removed only at a normal exit, so every ``kill -9`` leaked one.
    The setting is the one ``multiprocessing.util.get_temp_dir`` reads and caches.
    """
    config = getattr(multiprocessing.current_process(), "_config", None)
    if isinstance(config, dict) and len(str(folder)) <= _MAX_SOCKET_FOLDER:
        config.setdefault("tempdir", str(folder))


def remove_stale_scratch(base: Path) -> list[Path]:
    """Remove the scratch folders in ``base`` of processes that no longer run; return them.

    A folder is named after its process id; one whose process is alive, or that belongs to
    another user, is left alone (a reused pid only delays its removal).
    """
    import psutil

    removed = []
    for folder in base.glob(f"{_SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(_SCRATCH_PREFIX) :].partition("-")[0]
        try:
            if not pid.isdigit() or psutil.pid_exists(int(pid)) or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


# -- the child side ------------------------------------------------------------------------------


def _child_main(sender: Connection, run: PlannedRun, log_path: str) -> None:
    _release_fork_server()
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


def _release_fork_server() -> None:
    """Close the fork server's "alive" pipe, which the fork server hands every child it forks.

    The fork server exits when every holder of that pipe has closed it: the sweep (by dying) and
    its children. A child holding it kept its own parent, the fork server, alive after a
    ``kill -9`` of the sweep, so the parent-death signal below never came. This child starts no
    process through the fork server, so it needs no such pipe.
    """
    from multiprocessing import forkserver

    server: Any = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the fork server, which exits with the sweep) dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)
