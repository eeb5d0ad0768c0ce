"""A results database written by llmbench before results were typed still lists, shows and reports.

``tests/data/old_results.db`` (69 KB) was made with main at 7c56161, in a worktree run with
``PYTHONPATH=/tmp/oldmain/src LLMBENCH_HOME=... python -c 'from llmbench.cli import main; main()'``:

    run --backend fake -p 16 -n 8 -r 2
    sweep old.yaml    # one fake run with options {fault: exit}: failed, exit code 3, stderr tail
    eval --task tests/data/bigbench/arithmetic_1_digit_addition --limit 5 --n-ctx 512
    load -b fake --requests 4 -c 2 -p 16 -n 8 --slo-ttft 1
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import run_cli
from llmbench.measurement.results import EvalResult, GenerationResult, LoadResult
from llmbench.store import Store

OLD = Path(__file__).parent / "data" / "old_results.db"


def test_an_old_database_lists_shows_and_reports(env_setup: Path, tmp_path: Path) -> None:
    env_setup.mkdir(parents=True, exist_ok=True)
    shutil.copy(OLD, env_setup / "results.db")
    with Store() as store:
        records = {record.kind + ":" + record.status: record for record in store.runs()}
    assert set(records) == {"generate:ok", "generate:failed", "eval:ok", "load:ok"}
    generate = records["generate:ok"].result
    assert isinstance(generate, GenerationResult) and generate.repetitions == 2
    assert generate.summary["decode_tok_s"].count == 2 and generate.memory.peak_rss_bytes
    evaluation = records["eval:ok"].result
    assert isinstance(evaluation, EvalResult) and evaluation.examples == 5
    assert evaluation.headline is not None and evaluation.headline.count == 5
    load = records["load:ok"].result
    assert isinstance(load, LoadResult) and [step.sent for step in load.steps] == [4]
    assert records["generate:failed"].error

    code, out, err = run_cli("runs")
    assert code == 0, err
    assert all(record.id in out for record in records.values())
    code, out, err = run_cli("runs", "--format", "json")
    assert code == 0, err
    assert {row["id"] for row in json.loads(out)} == {record.id for record in records.values()}
    for record in records.values():
        code, out, err = run_cli("show", record.id)
        assert code == 0 and "Traceback" not in err, err
        assert record.id in out
        code, out, err = run_cli("show", record.id, "--format", "json")
        assert code == 0, err
        assert json.loads(out)["metrics"] == record.metrics
    code, out, err = run_cli("show", records["eval:ok"].id)
    assert "accuracy" in out and "sum" in out

    outputs = [tmp_path / f"old.{ext}" for ext in ("xlsx", "csv", "json", "md", "html")]
    runs = [arg for record in records.values() for arg in ("--run", record.id)]
    code, out, err = run_cli("report", *runs, *[arg for path in outputs for arg in ("--out", str(path))])
    assert code == 0, err
    assert all(path.stat().st_size > 0 for path in outputs)
    assert len(json.loads(outputs[2].read_text())["runs"]) == 4
    assert "Load steps" in outputs[3].read_text() and "Load steps" in outputs[4].read_text()
