"""Append-only, named schema migrations.

Each migration is a function registered with :func:`migration`; its name is recorded in the
``_llmbench_migrations`` table once applied. Never edit or reorder an applied migration: add a new
one at the end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations in order; return the names applied now."""
    db.execute("CREATE TABLE IF NOT EXISTS _llmbench_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _llmbench_migrations")}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with db:
            fn(db)
            db.execute(
                "INSERT INTO _llmbench_migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, datetime.now(timezone.utc).isoformat()),
            )
        applied.append(fn.__name__)
    return applied


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
