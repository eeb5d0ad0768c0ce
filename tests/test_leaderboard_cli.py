"""``llmbench leaderboard`` / ``recommend`` / sweeps with tasks, end to end on a real store."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import bigbench, one_line_error, run_cli
from llmbench.measurement.results import EvalResult
from llmbench.selection import configuration_of
from llmbench.store import Store


def _sweep(tmp_path: Path, body: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(body)
    code, out, err = run_cli("sweep", str(path), "--format", "json")
    assert code == 0, err
    return str(json.loads(out)["sweep"])


@pytest.fixture
def fake_sweep(tmp_path: Path) -> str:
    """Two fake configurations (two decode speeds), each timed and evaluated on two BIG-bench slices."""
    return _sweep(
        tmp_path,
        "models: [default]\nbackends: [fake]\n"
        "settings: {prompt_tokens: 16, max_new_tokens: 8, repetitions: 2, options: {token_delays: [0.001, 0.004]}}\n"
        f"tasks:\n  - {{task: {bigbench('arithmetic_1_digit_addition')}, limit: 6}}\n"
        f"  - {{task: {bigbench('sports_understanding')}, limit: 5, normalization: per_char}}\n",
    )


def test_leaderboard_rows_equal_the_store(fake_sweep: str) -> None:
    code, out, err = run_cli("leaderboard", "--sweep", fake_sweep, "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert sorted(document["tasks"]) == ["1_digit_addition", "sports_understanding"]
    with Store() as store:
        records = [r for r in store.runs(sweep_id=fake_sweep) if r.status == "ok"]
    assert len(records) == 6 and len(document["rows"]) == 2
    for row in document["rows"]:
        mine = [
            r
            for r in records
            if configuration_of(r).options
            == tuple(tuple(o) for o in row["configuration"]["settings"].items() if o[0] == "token_delays")
            or configuration_of(r).values() == row["configuration"]["settings"]
        ]
        evals = [r for r in mine if isinstance(r.result, EvalResult)]
        assert len(evals) == 2
        for record in evals:
            assert isinstance(record.result, EvalResult)
            task = record.result.task
            headline = record.result.headline
            assert headline is not None
            score = row["scores"][task]
            assert score["run_id"] == record.id
            assert score["accuracy"] == pytest.approx(headline.accuracy)
            assert score["count"] == headline.count == (6 if task == "1_digit_addition" else 5)
            assert score["normalization"] == ("per_char" if task == "sports_understanding" else "sum")
        timed = next(r for r in mine if r.kind == "generate")
        assert row["timed_run"] == timed.id
    fast, slow = sorted(document["rows"], key=lambda r: -r["decode_tok_s"])
    # the fake backend scores alike whatever its speed: tied on both tasks, the faster one alone on the front
    assert (
        fast["front"]["sports_understanding"] == ["decode", "memory", "ttft"]
        or "decode" in fast["front"]["sports_understanding"]
    )
    assert "decode" not in slow["front"].get("sports_understanding", [])
    assert slow["name"] in fast["scores"]["sports_understanding"]["tied_with"]


def test_leaderboard_table_csv_filters_and_errors(fake_sweep: str) -> None:
    code, out, err = run_cli("leaderboard", "--task", "sports_understanding", "--sort", "decode")
    assert code == 0, err
    assert "sports_understanding" in out and "best" in out and "n=5" in out
    code, out, err = run_cli("leaderboard", "--columns", "model,settings,decode,memory_mib", "--format", "csv",
                             "--filter", "decode_tok_s>=0", "--filter", "settings~0.004")  # fmt: skip
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert [row["settings"] for row in table] == ["token_delays=0.004"]
    assert list(table[0]) == ["model", "settings", "decode_tok_s", "memory_mib"]
    one_line_error(*run_cli("leaderboard", "--sort", "nope")[::2], "cannot sort by")
    one_line_error(*run_cli("leaderboard", "--task", "missing_task")[::2], "no configuration was evaluated")
    one_line_error(*run_cli("leaderboard", "--columns", "decode_tok")[::2], "unknown column")


def test_recommend_json_and_an_empty_answer(fake_sweep: str) -> None:
    code, out, err = run_cli("recommend", "--min-decode-tps", "1", "--max-memory", "8GB", "--format", "json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["empty_reason"] is None and answer["picks"]
    assert "token_delays=0.001" in answer["picks"][0]["name"]  # tied accuracy: the faster one first
    assert "binds" in answer["picks"][0]["binding"]
    code, out, err = run_cli("recommend", "--min-decode-tps", "1000000", "--task", "sports_understanding")
    assert code == 0, err
    assert "No recommendation: --min-decode-tps 1000000.0 tok/s left nothing" in out
    one_line_error(*run_cli("recommend", "--weights", "speed=2")[::2], "cannot read weight")
    one_line_error(*run_cli("recommend", "--max-memory", "lots")[::2], "cannot read size")
    one_line_error(*run_cli("recommend", "--max-cost", "3")[::2], "needs a price")


def test_a_bad_task_entry_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [default]\nbackends: [fake]\ntasks:\n  - task: nowhere.jsonl\n")
    code, _, err = run_cli("sweep", str(path), "--dry-run")
    line = one_line_error(code, err, "tasks[0]")
    assert f"{path}:4" in line
    path.write_text("models: [default]\ntasks:\n  - {task: x.jsonl, normalization: per_chars}\n")
    one_line_error(*run_cli("sweep", str(path))[::2], "unknown normalization", "per_char")


def test_real_smollm2_on_llama_cpp_timed_and_evaluated(tmp_path: Path) -> None:
    """One small real sweep: SmolLM2 on llama.cpp, a few BIG-bench examples, then the leaderboard."""
    sweep = _sweep(
        tmp_path,
        "models: [default]\nbackends: [llama.cpp]\n"
        "settings: {prompt_tokens: 16, max_new_tokens: 4, repetitions: 1, warmup: 0, threads: 2, n_ctx: 512}\n"
        f"tasks:\n  - {{task: {bigbench('arithmetic_1_digit_addition')}, limit: 3}}\n",
    )
    code, out, err = run_cli("leaderboard", "--sweep", sweep, "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)["rows"]
    with Store() as store:
        evaluation = next(r for r in store.runs(sweep_id=sweep, kind="eval"))
        examples = store.eval_examples(evaluation.id)
    assert isinstance(evaluation.result, EvalResult) and evaluation.status == "ok" and len(examples) == 3
    score = row["scores"]["1_digit_addition"]
    assert score["count"] == 3 and score["accuracy"] == pytest.approx(evaluation.result.headline.accuracy)  # type: ignore[union-attr]
    assert row["decode_tok_s"] > 0 and row["memory"]["source"] == "rss"
    assert row["facts"]["parameters"] > 100_000_000 and row["facts"]["license"] == "apache-2.0"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_report_marks_the_front(tmp_path: Path, fake_sweep: str) -> None:
    out = tmp_path / "r.html"
    code, _, err = run_cli("report", "--sweep", fake_sweep, "--out", str(out), "--out", str(tmp_path / "r.csv"))
    assert code == 0, err
    assert (tmp_path / "r-leaderboard.csv").is_file()
    text = out.read_text()
    assert "<h2>Leaderboard</h2>" in text and "Quality against memory: sports_understanding" in text
    if CHROMIUM is None:  # no browser: the plotly data in the page says the same
        assert text.count('"name":"Pareto front"') >= 4
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg")
        traces: list[dict[str, Any]] = page.evaluate(
            "Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({"
            "title: d.layout.yaxis.title.text || '', names: d.data.map(t => t.name),"
            "front: d.data.filter(t => t.name === 'Pareto front').map(t => t.text)}))"
        )
        fronts = [t for t in traces if "Pareto front" in t["names"]]
        assert len(fronts) == 4  # speed and memory, two tasks
        assert all(any("token_delays=0.001" in text for text in t["front"][0]) for t in fronts)
        # drawn: the star markers are in the SVG
        assert page.locator(".plotly-graph-div path.point").count() >= 8
        browser.close()
        assert problems == []


def _stored_run() -> None:
    """One hand-built timed run and evaluation in the test's store (no model is loaded)."""
    from llmbench.measurement.metrics import Summary
    from llmbench.measurement.results import Accuracy, GenerationResult, MemoryUsage
    from llmbench.store import RunRecord

    config = {"n_ctx": 2048, "threads": 2, "options": {}}
    timed = GenerationResult(summary={"decode_tok_s": Summary.of([50.0])}, memory=MemoryUsage(peak_rss_bytes=2**28))
    evaluation = EvalResult(task="t", examples=10, accuracy={"sum": Accuracy(0.5, 0.2, 0.8, 5, 10)})
    with Store() as store:
        store.save(RunRecord("generate", "ok", "m", "llama.cpp", config, {}, result=timed, model_path="/m.gguf"))
        store.save(RunRecord("eval", "ok", "m", "llama.cpp", config, {}, result=evaluation, model_path="/m.gguf"))


def test_bad_columns_normalization_and_limits_are_one_line_errors() -> None:
    """The bugs: ``--columns ,`` printed an empty table, a mistyped normalization dropped every accuracy,
    and out-of-range ``recommend`` limits were taken; each exited 0."""
    _stored_run()
    line = one_line_error(*run_cli("leaderboard", "--columns", ",")[::2], "--columns names no column")
    assert "decode_tok_s" in line
    one_line_error(*run_cli("leaderboard", "--normalization", "per_chars")[::2], "unknown normalization", "per_char")
    one_line_error(*run_cli("recommend", "--min-accuracy", "5")[::2], "--min-accuracy must lie between 0 and 1")
    one_line_error(*run_cli("recommend", "--max-memory", "0")[::2], "--max-memory must be a positive number")
    code, out, err = run_cli("leaderboard", "--columns", "model,decode", "--format", "csv")
    assert code == 0, err
    assert list(csv.DictReader(io.StringIO(out))) == [{"model": "m", "decode_tok_s": "50.0"}]
