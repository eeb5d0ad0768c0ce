"""Append-only, named schema migrations.

Each migration is a function registered with :func:`migration`; its name is recorded in the
``_llmbench_migrations`` table once applied. Never edit or reorder an applied migration: add a new
one at the end.

Several processes may open a fresh store at the same moment (five ``llmbench run`` started
together, three sweeps of one file): the pending migrations are applied under SQLite's write lock
(``BEGIN IMMEDIATE``), and the list of applied ones is read again inside that lock, so each
migration runs exactly once whoever gets there first.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from llmbench.errors import LLMBenchError

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One transaction that holds the database's write lock from its first statement.

    A plain (deferred) transaction reads first and asks for the write lock only at its first
    write, so two processes can both read "not done yet" and then both do it. ``BEGIN IMMEDIATE``
    waits (up to the connection's busy timeout) until no one else writes, then everything read
    inside it stays true until the commit.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.commit()


def _applied(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM _llmbench_migrations")}


def _pending_without_lock(db: sqlite3.Connection) -> bool:
    """A read-only look, so that opening an up-to-date store never waits for the write lock."""
    try:
        done = _applied(db)
    except sqlite3.OperationalError:  # no table yet: a fresh store
        return True
    return any(fn.__name__ not in done for fn in MIGRATIONS)


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations in order, all in one locked transaction; return the names applied now."""
    if not _pending_without_lock(db):
        return []
    applied = []
    with immediate(db):
        db.execute("CREATE TABLE IF NOT EXISTS _llmbench_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = _applied(db)  # again, under the lock: another process may have migrated meanwhile
        for fn in MIGRATIONS:
            if fn.__name__ in done:
                continue
            fn(db)
            db.execute(
                "INSERT INTO _llmbench_migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, datetime.now(timezone.utc).isoformat()),
            )
            applied.append(fn.__name__)
    return applied


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating it if needed) and migrate the store at ``path``; safe when many processes do it at once."""
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(path, timeout=30)
        db.row_factory = sqlite3.Row
        _use_wal(db)
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        raise _open_error(path, exc) from None
    return db


def _use_wal(db: sqlite3.Connection) -> None:
    """Write-ahead logging, so that readers go on while a sweep writes.

    The mode is kept in the file: the first opener switches it and later ones find it set. The
    switch needs the file to itself; when another process got there at the same moment (it then
    reports "locked"), that process is doing the same switch, so this one goes on without it.
    """
    if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    try:
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        if not _busy(exc):
            raise


def _busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _open_error(path: Path, exc: sqlite3.DatabaseError) -> LLMBenchError:
    """The error for a store that would not open; it calls the file damaged only when it is."""
    damage = _damage(path)
    if damage is not None:
        return LLMBenchError(
            f"cannot open the results store {path}: it is damaged or not an SQLite database ({damage})",
            "move the file aside (llmbench then starts a new store there), or point LLMBENCH_HOME at another folder",
        )
    if isinstance(exc, sqlite3.OperationalError) and _busy(exc):
        return LLMBenchError(
            f"cannot open the results store {path} ({exc})",
            "another llmbench process kept it locked for 30 s; try again when it has finished",
        )
    return LLMBenchError(
        f"cannot open the results store {path} ({exc})",
        f"check that you can write to {path.parent}, or point LLMBENCH_HOME at another folder",
    )


def _damage(path: Path) -> str | None:
    """What SQLite finds wrong with the file (``PRAGMA quick_check``); None if it reads as sound.

    Only a definite answer counts: a file that cannot be read at all (missing, locked, no
    permission) is not called damaged.
    """
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError:
        return None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed"
        return str(exc)
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.close()
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    return "; ".join(problems[:3]) or None


@migration
def m001_runs(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            model TEXT NOT NULL,
            model_path TEXT,
            backend TEXT NOT NULL,
            config TEXT NOT NULL,
            metrics TEXT,
            environment TEXT NOT NULL,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX runs_created_at ON runs (created_at)")


@migration
def m002_repetitions(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE repetitions (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            warmup INTEGER NOT NULL,
            metrics TEXT NOT NULL,
            itl_gaps TEXT NOT NULL,
            text TEXT,
            PRIMARY KEY (run_id, idx)
        )
        """
    )


@migration
def m003_run_keys_and_eval_examples(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE runs ADD COLUMN key TEXT")
    db.execute("CREATE INDEX runs_key ON runs (key)")
    db.execute(
        """
        CREATE TABLE eval_examples (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            example_id TEXT NOT NULL,
            answer INTEGER NOT NULL,
            scores TEXT NOT NULL,
            PRIMARY KEY (run_id, idx)
        )
        """
    )


@migration
def m004_sweeps(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE sweeps (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            name TEXT,
            source TEXT,
            config TEXT NOT NULL,
            planned INTEGER NOT NULL
        )
        """
    )
    db.execute("ALTER TABLE runs ADD COLUMN sweep_id TEXT REFERENCES sweeps (id)")
    # One row per run of a sweep, whatever crashes or resumes happened on the way.
    db.execute("CREATE UNIQUE INDEX runs_sweep_key ON runs (sweep_id, key) WHERE sweep_id IS NOT NULL")


@migration
def m005_claims(db: sqlite3.Connection) -> None:
    # A run of a sweep is claimed before it starts, so that two invocations of one sweep (two
    # terminals, several machines on one store) never run it twice. The claimant renews its lease
    # while the run runs and deletes the row once the run is stored; a claim whose claimant died
    # (same host, pid gone) or whose lease ran out is taken over.
    db.execute(
        """
        CREATE TABLE claims (
            sweep_id TEXT NOT NULL,
            key TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started REAL NOT NULL,
            claimed_at TEXT NOT NULL,
            lease_expires REAL NOT NULL,
            PRIMARY KEY (sweep_id, key)
        )
        """
    )


@migration
def m006_calibrations(db: sqlite3.Connection) -> None:
    # A machine's measured ceilings (memory bandwidth, matmul throughput) per device, appended each
    # time they are measured; a run uses the newest for its machine and device (the roofline).
    db.execute(
        """
        CREATE TABLE calibrations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            machine_key TEXT NOT NULL,
            device TEXT NOT NULL,
            measured_at TEXT NOT NULL,
            bandwidth_bytes_s REAL NOT NULL,
            matmul_flops REAL NOT NULL,
            dtype TEXT NOT NULL,
            threads INTEGER,
            method TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX calibrations_machine_device ON calibrations (machine_key, device, id)")
