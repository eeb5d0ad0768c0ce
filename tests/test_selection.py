"""Choosing a model: the join, the Pareto front, ties by McNemar + Holm, and recommendations."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llmbench.errors import InvalidOptionError
from llmbench.measurement.metrics import Summary
from llmbench.measurement.results import Accuracy, EvalResult, GenerationResult, MemoryUsage
from llmbench.selection import (
    Constraints,
    Price,
    build_leaderboard,
    columns_for,
    flat,
    holm,
    paired_tests,
    pareto_front,
    recommend,
)
from llmbench.store import RunRecord, Store

MODEL = "/models/m.gguf"
MiB = 2**20


def _timed(
    backend: str, decode: float, ttft_s: float, rss_mib: float | None, model: str = MODEL, **options: Any
) -> RunRecord:
    result = GenerationResult(
        summary={"decode_tok_s": Summary.of([decode]), "ttft_s": Summary.of([ttft_s])},
        memory=MemoryUsage(peak_rss_bytes=int(rss_mib * MiB) if rss_mib else None),
    )
    config = {"n_ctx": 2048, "threads": 2, "options": options}
    return RunRecord("generate", "ok", "m", backend, config, {}, result=result, model_path=model)


def _evaluated(
    backend: str, correct: int, count: int, model: str = MODEL, task: str = "t", **options: Any
) -> RunRecord:
    accuracy = Accuracy(correct / count, 0.1, 0.9, correct, count)
    result = EvalResult(task=task, examples=count, accuracy={"sum": accuracy}, examples_per_s=10.0)
    config = {"n_ctx": 2048, "threads": 2, "options": options, "task": f"/tasks/{task}", "shots": 0}
    return RunRecord("eval", "ok", "m", backend, config, {}, result=result, model_path=model)


def test_pareto_front_hand_checked() -> None:
    # accuracy (higher better) against memory (lower better):
    points = {"a": (0.9, 800.0), "b": (0.8, 400.0), "c": (0.7, 500.0), "d": (0.6, 100.0), "e": (0.8, 400.0)}
    # c is dominated by b (more accurate, less memory); b and e are equal: neither dominates, both stay.
    assert pareto_front(points, ("higher", "lower")) == {"a", "b", "d", "e"}
    # against decode speed (higher better): (accuracy, tok/s)
    speed = {"x": (0.5, 10.0), "y": (0.5, 20.0), "z": (0.4, 30.0)}
    assert pareto_front(speed, ("higher", "higher")) == {"y", "z"}


def test_holm_by_hand() -> None:
    # m = 3: sorted 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone), given back in input order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.9, 0.3]) == pytest.approx([0.9, 0.6])  # 2 x 0.3, then max(0.6, 1 x 0.9)
    assert holm([]) == []


def test_ties_follow_mcnemar_with_holm() -> None:
    ids = [str(i) for i in range(30)]
    strong = dict.fromkeys(ids, True)
    weak = {i: int(i) < 5 for i in ids}  # 25 examples strong gets right and weak does not: p ~ 6e-8
    near = {i: int(i) != 0 for i in ids}  # differs from strong on one example only: p = 1
    tests = {
        (a, b): (p, adj, tied) for a, b, _, _, _, p, adj, tied in paired_tests({"s": strong, "w": weak, "n": near})
    }
    assert tests[("n", "s")][2] is True
    assert tests[("s", "w")][2] is False and tests[("n", "w")][2] is False
    assert tests[("s", "w")][1] == pytest.approx(min(1.0, 3 * tests[("s", "w")][0]))  # smallest p times m
    # a difference that is significant alone (p = 2 * 0.5**6 = 0.031) but not once corrected for 3 tests
    six = {i: int(i) < 6 for i in ids}
    none = dict.fromkeys(ids, False)
    alone = paired_tests({"a": six, "b": none})
    assert alone[0][5] == pytest.approx(0.03125) and alone[0][7] is False
    corrected = paired_tests({"a": six, "b": none, "c": dict(none)})
    pair = next(t for t in corrected if t[:2] == ("a", "b"))
    assert pair[6] > 0.05 and pair[7] is True


def test_an_evaluation_counts_only_for_exactly_its_configuration() -> None:
    records = [
        _timed("llama.cpp", 50.0, 0.02, 300),
        _timed("transformers", 20.0, 0.05, 900),
        _timed("llama.cpp", 40.0, 0.02, 300, flash_attn=True),
        _evaluated("llama.cpp", 6, 10),
    ]
    board = build_leaderboard(records)
    by_backend = {(row.configuration.backend, row.settings): row for row in board.rows}
    assert by_backend[("llama.cpp", "flash_attn=true")].accuracy("t") is None  # other settings: not evaluated
    assert by_backend[("transformers", "")].accuracy("t") is None  # the same GGUF on another backend
    evaluated = by_backend[("llama.cpp", "")]
    assert evaluated.accuracy("t") == 0.6 and evaluated.scores["t"].count == 10
    assert evaluated.decode_tok_s == pytest.approx(50.0) and evaluated.ttft_ms == pytest.approx(20.0)


def test_report_accuracy_uses_the_same_join(tmp_path: Any) -> None:
    """The bug: an eval on llama.cpp showed on the transformers rows of the same GGUF."""
    from llmbench.reports import load_runs, rows

    with Store() as store:
        ids = [store.save(_timed("transformers", 20.0, 0.05, 900)), store.save(_timed("llama.cpp", 50.0, 0.02, 300))]
        store.save(_evaluated("llama.cpp", 7, 10))
        runs = load_runs(store, run_ids=ids)
    table = {row["backend"]: row for row in rows(runs)}
    assert table["transformers"]["accuracy"] is None
    assert table["llama.cpp"]["accuracy"] == pytest.approx(0.7)


def test_missing_is_missing_and_memory_falls_back_to_the_plan() -> None:
    from llmbench.selection import SpecFacts

    records = [_evaluated("llama.cpp", 5, 10)]  # evaluated, never timed
    board = build_leaderboard(
        records, facts=lambda configuration: SpecFacts(parameters=135, planned_peak_bytes=200 * MiB)
    )
    (row,) = board.rows
    assert row.decode_tok_s is None and row.ttft_ms is None and row.load_tok_s is None
    assert row.memory is not None and row.memory.estimated and row.memory.bytes == 200 * MiB
    assert row.facts is not None and row.facts.parameters == 135
    answer = recommend(board, Constraints(min_decode_tps=1))
    assert answer.picks == () and answer.empty_reason is not None
    (command,) = [item.command for item in answer.unmeasured if "decode" in item.missing]
    assert command == "llmbench run /models/m.gguf -b llama.cpp --n-ctx 2048 -t 2"


def test_cost_from_price_per_hour() -> None:
    board = build_leaderboard(
        [_timed("llama.cpp", 100.0, 0.02, 300), _evaluated("llama.cpp", 5, 10)], price=Price(per_hour=3.6)
    )
    (row,) = board.rows
    assert row.cost is not None and row.cost.basis == "decode speed"
    assert row.cost.per_million_output == pytest.approx(3.6 / (100 * 3600) * 1e6)  # 10 per million tokens
    assert row.cost.per_correct["t"] == pytest.approx(3.6 / 3600 / 10.0 / 0.5)


def _board() -> Any:
    """Four configurations of one model: evaluated and timed, each a different trade."""
    records = []
    for name, decode, ttft, rss, correct in (
        ("fast", 80.0, 0.40, 600, 60), ("small", 30.0, 0.10, 200, 62), ("best", 20.0, 0.90, 900, 80),
        ("worse", 10.0, 0.95, 950, 50),
    ):  # fmt: skip
        records.append(_timed("llama.cpp", decode, ttft, rss, variant=name))
        records.append(_evaluated("llama.cpp", correct, 100, variant=name))
    return build_leaderboard(records)


def test_recommend_honours_each_constraint() -> None:
    board = _board()
    names = lambda answer: [pick.row.settings for pick in answer.picks]  # noqa: E731
    everything = recommend(board, Constraints())
    assert names(everything) == ["variant=best", "variant=small", "variant=fast"]  # "worse" is off the front
    assert any("variant=worse" in name and "off the front" in why for name, why in everything.excluded)
    memory = recommend(board, Constraints(max_memory_bytes=700 * MiB))
    # the answer's axes are the constrained ones: on accuracy x memory, "small" (0.62, 200 MiB) beats "fast"
    assert names(memory) == ["variant=small"] and memory.axes == ("memory",)
    assert any("variant=best" in name and "over 700 MiB" in why for name, why in memory.excluded)
    assert memory.picks[0].binding.startswith("peak memory binds: 200 MiB against --max-memory 700 MiB")
    decode = recommend(board, Constraints(min_decode_tps=25))
    assert names(decode) == ["variant=small", "variant=fast"]
    ttft = recommend(board, Constraints(max_ttft_ms=200))
    assert names(ttft) == ["variant=small"]
    accuracy = recommend(board, Constraints(min_accuracy=0.7))
    assert names(accuracy) == ["variant=best"]
    weighted = recommend(board, Constraints(), {"accuracy": 0.1, "decode": 1.0})
    assert names(weighted)[0] == "variant=fast"
    assert everything.picks[0].versus_next is not None and "accuracy +0.180" in everything.picks[0].versus_next


def test_a_trade_within_one_percent_is_the_same_not_worse() -> None:
    """Seen on the demo sweep: 370 MiB against 370 MiB (369.6 vs 369.5) was called "worse"."""
    records = []
    for name, decode, rss in (("two", 88.8, 369.6), ("one", 57.2, 369.5)):
        records.append(_timed("llama.cpp", decode, 0.3, rss, variant=name))
        records.append(_evaluated("llama.cpp", 12, 20, variant=name))
    answer = recommend(build_leaderboard(records), Constraints(max_memory_bytes=2000 * MiB, min_decode_tps=20))
    versus = answer.picks[0].versus_next
    assert versus is not None and "(better)" in versus and "(worse)" not in versus and "(same)" in versus


def test_an_empty_answer_names_the_constraint_that_emptied_it() -> None:
    answer = recommend(_board(), Constraints(max_memory_bytes=700 * MiB, min_decode_tps=100))
    assert answer.picks == ()
    assert answer.empty_reason is not None and answer.empty_reason.startswith(
        "--min-decode-tps 100.0 tok/s left nothing"
    )
    assert "80.0 tok/s" in answer.empty_reason  # the best the remaining ones offer
    unknown = recommend(_board(), Constraints(task="nope"))
    assert unknown.empty_reason == "no configuration was evaluated on nope"
    assert all("llmbench eval" in item.command and "--task nope" in item.command for item in unknown.unmeasured)


def test_roofline_read_through_the_registry_when_it_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbench.measurement import registry

    assert build_leaderboard([_timed("llama.cpp", 50.0, 0.02, 300)]).rows[0].roofline == {}
    fake = registry.Metric("decode_roofline", "decode roofline", "roofline", "fraction", lambda source: 0.42)
    monkeypatch.setitem(registry.BY_KEY, "decode_roofline", fake)
    assert build_leaderboard([_timed("llama.cpp", 50.0, 0.02, 300)]).rows[0].roofline == {"decode_roofline": 0.42}
    broken = registry.Metric("prefill_roofline", "p", "p", "fraction", lambda source: math.nan)
    monkeypatch.setitem(registry.BY_KEY, "prefill_roofline", broken)
    assert "prefill_roofline" not in build_leaderboard([_timed("llama.cpp", 50.0, 0.02, 300)]).rows[0].roofline


SERVER = "http://127.0.0.1:8000/v1"


def _served(prompt: int | None, output: float | None) -> RunRecord:
    """A timed run of an API target: ``prompt`` tokens in, ``output`` tokens out per generation."""
    summary = {"decode_tok_s": Summary.of([40.0]), "ttft_s": Summary.of([0.1])}
    if output is not None:
        summary["output_tokens"] = Summary.of([output, output])
    config: dict[str, Any] = {"n_ctx": 2048, "threads": 2, "options": {}}
    if prompt is not None:
        config["prompt_tokens"] = prompt
    return RunRecord(
        "generate", "ok", "m", "openai", config, {}, result=GenerationResult(summary=summary), model_path=SERVER
    )


def test_api_cost_prices_input_and_output_tokens() -> None:
    """The bug: --price-per-m-input was stored and never used (the cost was the output price alone)."""
    price = Price(per_million_input=1.0, per_million_output=2.0)
    (row,) = build_leaderboard([_served(128, 64)], price=price).rows
    # one generation: 128 x 1 + 64 x 2 per million tokens = 256 per million; over 64 output tokens, 4 per million
    assert row.cost is not None and row.cost.per_million_output == pytest.approx(4.0)
    assert row.cost.basis == "API price" and row.cost.missing == ()
    (alone,) = build_leaderboard([_served(128, 64)], price=Price(per_million_input=1.0)).rows
    assert alone.cost is not None and alone.cost.per_million_output == pytest.approx(2.0)  # 128 x 1 / 64
    # without the token counts the input price cannot be applied: missing, said, never zero
    (unknown,) = build_leaderboard([_served(None, 64)], price=price).rows
    assert unknown.cost is not None and unknown.cost.per_million_output is None and unknown.axis("cost") is None
    assert "token counts" in unknown.cost.missing[0]
    texted = _served(128, 64)
    texted.config["prompt"] = "a text prompt of unknown length"  # older run: prompt_tokens was not what was sent
    (text,) = build_leaderboard([texted], price=price).rows
    assert text.cost is not None and text.cost.per_million_output is None
    # an evaluation stores no token counts: its cost per correct answer is missing, not zero
    evaluated = _evaluated("openai", 5, 10, model=SERVER)
    (both,) = build_leaderboard([_served(128, 64), evaluated], price=price).rows
    assert both.cost is not None and both.cost.per_correct == {}
    assert any(note.startswith("cost per correct answer on t") for note in both.cost.missing)
    board = build_leaderboard([_served(128, 64), evaluated], price=price)
    assert flat(board, board.rows[0])["cost_per_correct:t"] is None
    assert "token counts" in flat(board, board.rows[0])["cost_missing"]


def test_an_unknown_normalization_is_refused_with_a_hint() -> None:
    """The bug: a typo in --normalization silently dropped every accuracy."""
    records = [_evaluated("llama.cpp", 5, 10)]
    with pytest.raises(InvalidOptionError, match="unknown normalization 'per_chars'") as caught:
        build_leaderboard(records, normalization="per_chars")
    assert caught.value.hint is not None and "did you mean 'per_char'?" in caught.value.hint
    assert build_leaderboard(records, normalization="per_char").rows[0].scores == {}  # known, not evaluated
    assert build_leaderboard(records, normalization="sum").rows[0].accuracy("t") == 0.5


@pytest.mark.parametrize(
    "limits",
    [
        {"min_accuracy": 5.0},
        {"min_accuracy": -0.1},
        {"min_decode_tps": -5.0},
        {"max_memory_bytes": 0},
        {"max_ttft_ms": -1.0},
        {"max_cost_per_million": math.inf},
        {"min_decode_tps": math.nan},
    ],
)
def test_constraints_out_of_range_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(InvalidOptionError, match="must"):
        Constraints(**limits)  # type: ignore[arg-type]


def test_constraints_at_their_bounds_are_taken() -> None:
    assert Constraints(min_accuracy=0.0).limits() == [("accuracy", "min", 0.0)]
    assert Constraints(min_accuracy=1.0, max_memory_bytes=1).limits()[0] == ("memory", "max", 1.0)


def _gpu(memory: MemoryUsage) -> RunRecord:
    result = GenerationResult(summary={"decode_tok_s": Summary.of([50.0])}, memory=memory)
    return RunRecord("generate", "ok", "m", "transformers", {"device": "cuda"}, {}, result=result, model_path=MODEL)


def test_memory_is_one_labelled_measure() -> None:
    """The bug: GPU rows took torch's allocated count (and an older whole-GPU figure) ahead of this process's VRAM."""
    every = MemoryUsage(
        peak_rss_bytes=900 * MiB,
        peak_vram_allocated_bytes=300 * MiB,
        peak_vram_reserved_bytes=400 * MiB,
        peak_vram_process_bytes=700 * MiB,
        peak_vram_device_bytes=2000 * MiB,
    )
    (row,) = build_leaderboard([_gpu(every)]).rows
    assert row.memory is not None and (row.memory.bytes, row.memory.source) == (700 * MiB, "vram")
    assert row.memory.measure == "process VRAM (NVML)"
    torch_only = MemoryUsage(peak_rss_bytes=900 * MiB, peak_vram_allocated_bytes=300 * MiB, peak_vram_reserved_bytes=400 * MiB)  # fmt: skip
    (reserved,) = build_leaderboard([_gpu(torch_only)]).rows
    assert reserved.memory is not None and (reserved.memory.bytes, reserved.memory.measure) == (
        400 * MiB,
        "torch reserved",
    )
    (allocated,) = build_leaderboard([_gpu(MemoryUsage(peak_vram_allocated_bytes=300 * MiB))]).rows
    assert allocated.memory is not None and allocated.memory.measure == "torch allocated"
    (cpu,) = build_leaderboard([_timed("llama.cpp", 50.0, 0.02, 300)]).rows
    assert cpu.memory is not None and (cpu.memory.bytes, cpu.memory.source, cpu.memory.measure) == (
        300 * MiB,
        "rss",
        "peak RSS",
    )
    board = build_leaderboard([_gpu(every)])
    assert flat(board, board.rows[0])["memory_source"] == "measured VRAM: process VRAM (NVML)"


def test_each_axis_is_stated_once() -> None:
    from dataclasses import fields

    from llmbench.harness import ModelSetup
    from llmbench.selection import AXES, AXIS_COLUMNS, AXIS_NAMES, WEIGHT_NAMES
    from llmbench.selection._configs import SETUP_KEYS
    from llmbench.sweep._plan import _SETUP_CHOICES

    assert ("accuracy", *AXES) == WEIGHT_NAMES and set(AXIS_NAMES) == set(WEIGHT_NAMES)
    board = build_leaderboard([_timed("llama.cpp", 50.0, 0.02, 300)], price=Price(per_hour=1.0))
    keys = {column.key for column in columns_for(board)}
    assert set(AXIS_COLUMNS) == set(AXES) and set(AXIS_COLUMNS.values()) <= keys
    load = {f.name for f in fields(ModelSetup)} - {"model", "backend", "options"}
    assert set(SETUP_KEYS) == set(_SETUP_CHOICES) == load
