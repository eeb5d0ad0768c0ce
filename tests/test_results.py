"""Typed results: every stored shape reads back, round trips are exact, one metric registry."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from llmbench.measurement import registry
from llmbench.measurement.metrics import Summary
from llmbench.measurement.results import (
    Accuracy,
    EvalResult,
    GenerationResult,
    LoadResult,
    LoadStep,
    MemoryUsage,
    PerplexityResult,
    error_counts,
    result_from_json,
)
from llmbench.store import RunRecord, Store, finite

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = {"count": 3, "mean": 0.02, "std": 0.001, "min": 0.019, "max": 0.021, "p50": 0.02, "p90": 0.021, "p99": 0.021}
EMPTY = {"count": 0, "mean": None, "std": None, "min": None, "max": None, "p50": None, "p90": None, "p99": None}

# The metrics JSON each kind stored before results were typed (main at 7c56161).
OLD_GENERATE = {
    "model_size_bytes": 1000,
    "load_s": 0.5,
    "rss_after_load_bytes": 2000,
    "peak_rss_bytes": 3000,
    "rss_before_load_bytes": 1500,
    "memory_samples": 12,
    "summary": {"ttft_s": SUMMARY, "decode_tok_s": {**SUMMARY, "mean": 50.0}, "itl_gap_s": EMPTY},
    "repetitions": 3,
    "sample_text": "hello",
}
OLD_EVAL = {
    "examples": 5,
    "accuracy": {
        "sum": {"accuracy": 0.6, "ci95_low": 0.2, "ci95_high": 0.9, "correct": 3, "count": 5, "ece": 0.1, "brier": 0.5},
        "per_char": {"accuracy": None, "ci95_low": None, "ci95_high": None, "correct": 0, "count": 0, "ece": None, "brier": None},
    },
    "task": "t",
    "examples_per_s": 2.5,
    "scored_this_session": 5,
    "resumed_from": 0,
    "load_s": 0.1,
    "peak_rss_bytes": 4000,
}  # fmt: skip
OLD_STEP = {
    "mode": "concurrency", "concurrency": 2, "sent": 4, "ok": 3, "failed": 1, "errors": {"connect": 1},
    "window_s": 1.0, "measured_requests": 3, "request_throughput": 3.0, "output_tok_s": 30.0, "output_tok_s_peak": 31.0,
    "ttft_s": SUMMARY, "itl_s": SUMMARY, "e2e_s": SUMMARY, "decode_tok_s": SUMMARY, "output_tokens": SUMMARY,
    "queue_s": SUMMARY, "send_lateness_s": SUMMARY, "client_bound": False, "analysis_s": 0.01,
}  # fmt: skip


def _stored(data: dict[str, Any]) -> dict[str, Any]:
    """What a value looks like after the store's JSON (NaN as null)."""
    parsed: dict[str, Any] = json.loads(json.dumps(finite(data)))
    return parsed


def test_old_generation_metrics_read_typed() -> None:
    result = result_from_json("generate", OLD_GENERATE)
    assert isinstance(result, GenerationResult)
    assert result.load_s == 0.5 and result.model_size_bytes == 1000 and result.repetitions == 3
    assert result.memory == MemoryUsage(3000, 1500, 2000, 12)
    assert result.summary["ttft_s"] == Summary(3, 0.02, 0.001, 0.019, 0.021, 0.02, 0.021, 0.021)
    assert result.summary["itl_gap_s"].count == 0 and math.isnan(result.summary["itl_gap_s"].mean)
    assert result.shortfall is None and result.produced_tokens is None
    assert registry.DECODE.value(result) == 50.0
    assert registry.TTFT.value(result, "p99") == pytest.approx(21.0)  # seconds shown as ms
    assert registry.PEAK_RSS.value(result) == pytest.approx(3000 / 2**20)


def test_every_kind_round_trips_through_json() -> None:
    for kind, data in (("generate", OLD_GENERATE), ("eval", OLD_EVAL), ("load", {"steps": [OLD_STEP]})):
        result = result_from_json(kind, data)
        assert result is not None
        again = result_from_json(kind, _stored(result.to_json()))
        assert _stored(again.to_json()) == _stored(result.to_json()), kind  # type: ignore[union-attr]
        for key, value in data.items():
            if key != "steps":
                assert _stored(result.to_json())[key] == _stored({key: value})[key], (kind, key)
    perplexity = PerplexityResult(perplexity=12.5, nll_per_token=2.5, tokens_scored=100, windows=2, seconds=2.0,
                                  window=64, stride=32, load_s=0.1, memory=MemoryUsage(peak_rss_bytes=5))  # fmt: skip
    data = perplexity.to_json()
    assert data["tokens_per_s"] == 50.0
    assert result_from_json("perplexity", _stored(data)) == perplexity


def test_missing_keys_read_as_none_and_unknown_keys_survive() -> None:
    result = result_from_json("eval", {"task": "t", "later_field": [1, 2]})
    assert isinstance(result, EvalResult)
    assert result.examples is None and result.accuracy == {} and result.memory == MemoryUsage()
    assert result.to_json()["later_field"] == [1, 2]
    step = LoadStep.from_json({"mode": "rate", "rate": 2.0})
    assert step.sent == 0 and step.ttft_s is None and step.retries == 0 and step.step_status == "ok"
    assert step.label == "rate 2/s" and registry.TTFT.value(step) is None
    assert result_from_json("generate", None) is None and result_from_json("generate", {}) is None
    assert result_from_json("some-future-kind", {"x": 1}) is None
    malformed = result_from_json("generate", {"summary": [1, 2], "load_s": "soon", "repetitions": "3"})
    assert isinstance(malformed, GenerationResult)
    assert malformed.summary == {} and malformed.load_s is None and malformed.repetitions == 3


def test_eval_accuracy_is_typed_and_ordered() -> None:
    result = EvalResult.from_json(OLD_EVAL)
    assert list(result.accuracy) == ["sum", "per_char"]
    assert result.accuracy["sum"] == Accuracy(0.6, 0.2, 0.9, 3, 5, 0.1, 0.5)
    assert result.headline == result.accuracy["sum"] and registry.ACCURACY.value(result) == 0.6
    assert result.memory.peak_rss_bytes == 4000


def test_load_errors_read_as_counts_not_a_dict() -> None:
    assert error_counts({"http_500": 1, "connect": 2}) == "connect 2, http_500 1"
    assert error_counts({}) == ""
    result = LoadResult.from_json({"steps": [OLD_STEP, {**OLD_STEP, "errors": {"http_500": 1, "connect": 1}}]})
    assert result.steps[0].error_text == "connect 1"
    assert error_counts(result.errors) == "connect 2, http_500 1"
    assert result.steps[0].label == "concurrency 2"


def test_run_record_keeps_a_failures_notes_beside_the_result(env_setup: Path) -> None:
    record = RunRecord("generate", "failed", "m", "fake", {}, {}, metrics={"stderr_tail": "boom", "exit_code": 3})
    assert record.result is None and record.stderr_tail == "boom" and record.exit_code == 3
    with Store() as store:
        store.save(record)
        got = store.get(record.id)
    assert got.result is None and got.stderr_tail == "boom" and got.exit_code == 3
    assert got.metrics == {"stderr_tail": "boom", "exit_code": 3}


def test_store_builds_typed_results_at_its_boundary(env_setup: Path) -> None:
    result = GenerationResult(
        load_s=0.25, memory=MemoryUsage(peak_rss_bytes=7), summary={"ttft_s": Summary.of([0.1, 0.3])}
    )
    with Store() as store:
        run_id = store.save(RunRecord("generate", "ok", "m", "fake", {}, {}, result=result))
        stored = store.get(run_id)
        raw = json.loads(store.db.execute("SELECT metrics FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
    assert stored.result == result
    assert raw["load_s"] == 0.25 and raw["peak_rss_bytes"] == 7 and raw["summary"]["ttft_s"]["count"] == 2


def test_one_metric_list() -> None:
    """The registry is the only list of metrics: no module keeps labels or units of its own."""
    assert len(registry.BY_KEY) == len(registry.METRICS)
    assert {m.key for m in registry.GENERATION_SUMMARY} >= {"ttft_s", "decode_tok_s", "itl_gap_s", "e2e_s"}
    from llmbench.measurement.metrics import SUMMARISED

    derived = {"itl_gap_s", "decode_roofline", "prefill_roofline"}  # pooled gaps; rates over the roofline's bounds
    derived |= {
        "encode_s",
        "image_preprocess_s",
        "vision_encode_s",
        "image_tokens",
        "decode_cuda_tok_s",
    }  # stages, counts
    assert set(SUMMARISED) | derived == {m.key for m in registry.GENERATION_SUMMARY}
    readers = ["cli/_tables.py", "reports/_rows.py", "reports/_excel.py", "reports/_html.py", "reports/_text.py",
               "reports/compare.py", "planning/_compare.py"]  # fmt: skip
    for name in readers:
        text = (ROOT / "src" / "llmbench" / name).read_text()
        assert ".metrics or {}" not in text and '.get("summary")' not in text and "COLUMNS_BY_KEY" not in text, name
        assert not re.search(r"\"(time to first token|TTFT mean|decode \(tok/s\))", text), name


def test_every_missing_extra_names_an_extra_that_exists() -> None:
    """`pip install 'llmbench[X]'` hints must name an extra pyproject.toml declares."""
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = []
    for path in (ROOT / "src" / "llmbench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "missing_extra"
            ):
                extra = node.args[1]
                assert isinstance(extra, ast.Constant), path
                named.append((path.name, extra.value))
    assert named
    assert [(path, extra) for path, extra in named if extra not in extras] == []


def test_load_table_shows_error_counts(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbench.cli._tables import print_load, print_runs

    monkeypatch.setenv("COLUMNS", "400")
    step = LoadStep(mode="concurrency", concurrency=2, sent=3, ok=0, failed=3, errors={"http_500": 1, "connect": 2})
    record = RunRecord("load", "failed", "m", "openai", {}, {}, result=LoadResult(steps=[step]), error="3 of 3 failed")
    print_load(record)
    print_runs([record])
    out = capsys.readouterr().out
    assert "3 (connect 2, http_500 1)" in out and "failed: connect 2, http_500 1" in out
    assert "{" not in out


def test_compare_reads_the_registry() -> None:
    from conftest import run_cli

    ids = []
    for delay in ("0.001", "0.004"):
        code, out, err = run_cli("run", "--backend", "fake", "-p", "8", "-n", "8", "-r", "3", "-o", f"token_delays={delay}", "--format", "json")  # fmt: skip
        assert code == 0, err
        ids.append(json.loads(out)["id"])
    code, out, err = run_cli("compare", *ids, "--format", "json")
    assert code == 0, err
    rows = {row["metric"]: row for row in json.loads(out)["metrics"]}
    assert list(rows) == [metric.key for metric in registry.SPEED]
    assert rows["itl_s"]["label"] == "inter-token latency (ms)" and rows["itl_s"]["better"] == "lower"
    assert rows["ttft_s"]["scale"] == 1000 and rows["decode_tok_s"]["better"] == "higher"
    code, out, err = run_cli("compare", *ids)
    assert code == 0, err
    assert "inter-token latency (ms)" in out


def test_a_comparison_says_which_run_is_better() -> None:
    from llmbench.reports.compare import MetricComparison

    def compared(metric: registry.Metric, a: float, b: float, p: float) -> MetricComparison:
        return MetricComparison(metric.key, a, b, b / a, p, "t", 5, 5, metric.title, metric.scale, metric.better)

    assert compared(registry.ITL, 0.01, 0.02, 0.001).verdict == "worse"  # latency up
    assert compared(registry.DECODE, 10.0, 20.0, 0.001).verdict == "better"  # throughput up
    assert compared(registry.DECODE, 10.0, 20.0, 0.5).verdict == ""  # within noise
    assert compared(registry.ITL, 0.01, 0.02, 0.001).shown(0.02) == 20.0
