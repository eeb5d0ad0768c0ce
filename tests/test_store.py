"""The SQLite store: location, migrations, round trips."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llmbench.errors import LLMBenchError
from llmbench.measurement.results import GenerationResult
from llmbench.paths import user_dir
from llmbench.store import RunRecord, Store
from llmbench.store import _migrations as migrations


def _record(**overrides: object) -> RunRecord:
    data: dict[str, object] = {
        "kind": "generate",
        "status": "ok",
        "model": "m",
        "backend": "fake",
        "config": {"a": 1},
        "environment": {"cpu": "x"},
        "result": GenerationResult(load_s=1.5, extra={"nan": float("nan")}),
    }
    data.update(overrides)
    return RunRecord(**data)  # type: ignore[arg-type]


def test_store_lives_in_llmbench_home(env_setup: Path) -> None:
    assert user_dir() == env_setup
    with Store() as store:
        assert store.path == env_setup / "results.db"
    assert (env_setup / "results.db").exists()


def test_migrations_are_named_and_applied_once(env_setup: Path) -> None:
    Store().close()
    db = sqlite3.connect(env_setup / "results.db")
    names = [row[0] for row in db.execute("SELECT name FROM _llmbench_migrations ORDER BY rowid")]
    assert names == [fn.__name__ for fn in migrations.MIGRATIONS]
    assert migrations.migrate(db) == []


def test_appended_migration_runs_on_an_existing_store(env_setup: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store() as store:
        store.save(_record())

    def m999_add_note(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_add_note])
    with Store() as store:
        assert len(list(store.runs())) == 1  # nothing lost
        columns = {row[1] for row in store.db.execute("PRAGMA table_info(runs)")}
    assert "note" in columns


def test_round_trip_and_prefix_lookup() -> None:
    with Store() as store:
        first = store.save(_record(model="a"))
        store.save(_record(model="b"))
        got = store.get(first[:6])
        assert got.model == "a" and got.result == GenerationResult(load_s=1.5, extra={"nan": None})
        raw = store.db.execute("SELECT metrics FROM runs WHERE id = ?", (first,)).fetchone()[0]
        assert '"nan": null' in raw and '"load_s": 1.5' in raw  # JSON has no NaN: stored as null
        assert [r.model for r in store.runs()] == ["b", "a"]
        assert len(list(store.runs(limit=1))) == 1
        with pytest.raises(LLMBenchError, match="no stored run"):
            store.get("zzzz")


def test_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "results.db"
    broken.write_text("this is not a database")
    with pytest.raises(LLMBenchError, match="cannot open the results store"):
        Store(broken)
