"""Many processes opening one fresh store at the same moment; a damaged file is called damaged, only then."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llmbench.errors import LLMBenchError
from llmbench.store import Store
from llmbench.store import _migrations as migrations

# Each process imports first (the slow part), says it is ready, and opens the store when told to:
# all of them then open it within a millisecond or so.
OPEN_ON_CUE = """\
import sys
from llmbench.errors import LLMBenchError
from llmbench.store import Store
print("ready", flush=True)
sys.stdin.readline()
try:
    with Store(sys.argv[1]) as store:
        store.finished_keys("none")
except LLMBenchError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def _open_together(path: Path, count: int) -> list[tuple[int, str]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_ON_CUE, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        _, err = process.communicate(timeout=120)
        results.append((process.returncode, err.strip()))
    return results


def test_many_processes_open_a_fresh_store_at_once(tmp_path: Path) -> None:
    for attempt in range(3):
        path = tmp_path / f"round-{attempt}" / "results.db"
        path.parent.mkdir()
        results = _open_together(path, 10)
        failures = [err for code, err in results if code != 0]
        assert not failures, failures
        db = sqlite3.connect(path)
        names = [row[0] for row in db.execute("SELECT name FROM _llmbench_migrations")]
        assert sorted(names) == sorted(fn.__name__ for fn in migrations.MIGRATIONS)  # each applied once
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()


def test_an_up_to_date_store_opens_while_another_process_writes(tmp_path: Path) -> None:
    """Only pending migrations take the write lock: opening never waits for a writer (a sweep saving a run)."""
    path = tmp_path / "results.db"
    Store(path).close()
    writer = sqlite3.connect(path, timeout=30)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with Store(path) as store:
            assert store.finished_keys("none") == set()
    finally:
        writer.rollback()
        writer.close()


def test_a_file_that_is_not_a_database_is_called_damaged(tmp_path: Path) -> None:
    broken = tmp_path / "results.db"
    broken.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(LLMBenchError, match="cannot open the results store") as caught:
        Store(broken)
    assert "damaged" in caught.value.message and "move the file aside" in (caught.value.hint or "")


def test_a_sound_store_that_fails_to_open_is_not_called_damaged(tmp_path: Path) -> None:
    """The failures the issue saw ("table runs already exists", "database is locked") are not damage."""
    path = tmp_path / "results.db"
    Store(path).close()
    for failure in ("table runs already exists", "duplicate column name: key", "database is locked"):
        error = migrations._open_error(path, sqlite3.OperationalError(failure))
        text = f"{error.message} {error.hint}"
        assert "damaged" not in text and failure in text
    locked = migrations._open_error(path, sqlite3.OperationalError("database is locked"))
    assert "try again" in (locked.hint or "")
