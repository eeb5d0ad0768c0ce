"""The single-run scenario and the store, driven by the scripted fake backend (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbench.backends.base import GenerationConfig, LoadOptions
from llmbench.backends.fake import FakeBackend
from llmbench.errors import InvalidOptionError, LLMBenchError
from llmbench.harness import ModelSetup
from llmbench.measurement.results import GenerationResult
from llmbench.models import resolve_model
from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark
from llmbench.store import Store


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "fake"}')
    return folder


def test_fake_generation_timestamps(fake_model: Path) -> None:
    backend = FakeBackend(resolve_model(fake_model), LoadOptions(extra={"prefill_delay": 0.05, "token_delays": [0.01]}))
    generation = backend.generate("hello", GenerationConfig(max_new_tokens=5))
    assert generation.output_tokens == 5 and generation.prompt_tokens == 5
    assert generation.token_times[0] - generation.t_start >= 0.05
    gaps = [b - a for a, b in zip(generation.token_times, generation.token_times[1:], strict=False)]
    assert all(gap >= 0.01 for gap in gaps)
    assert generation.t_end >= generation.token_times[-1]


def test_eos_and_force(fake_model: Path) -> None:
    backend = FakeBackend(resolve_model(fake_model), LoadOptions(extra={"eos_after": 3}))
    assert backend.generate("abcdef", GenerationConfig(max_new_tokens=8)).output_tokens == 3
    forced = backend.generate("abcdef", GenerationConfig(max_new_tokens=8, force_new_tokens=True))
    assert forced.output_tokens == 8 and forced.finish_reason == "length"


def test_stream_yields_the_generated_text(fake_model: Path) -> None:
    backend = FakeBackend(resolve_model(fake_model), LoadOptions())
    config = GenerationConfig(max_new_tokens=6)
    assert "".join(backend.stream("hello!", config)) == backend.generate("hello!", config).text


def test_run_benchmark_stores_what_it_returns(fake_model: Path) -> None:
    config = BenchmarkConfig(
        setup=ModelSetup(str(fake_model), "fake", options={"prefill_delay": 0.02, "token_delays": [0.005]}),
        prompt_tokens=16,
        max_new_tokens=6,
        warmup=1,
        repetitions=3,
    )
    with Store() as store:
        record = run_benchmark(config, store=store)
        stored = store.get(record.id)
    assert stored.status == "ok"
    assert stored.metrics == json.loads(json.dumps(record.metrics))
    assert isinstance(stored.result, GenerationResult) and stored.result == record.result
    summary = stored.result.summary
    assert summary["output_tokens"].mean == 6 and summary["ttft_s"].count == 3
    assert summary["ttft_s"].min >= 0.02
    assert summary["itl_gap_s"].count == 3 * 5
    assert all(rep.metrics.e2e_s >= rep.metrics.ttft_s for rep in stored.repetitions)
    assert stored.config["prompt_length"] == 16
    assert len(stored.repetitions) == 4 and stored.repetitions[0].warmup
    assert stored.environment["cpu_logical_cores"] >= 1
    assert (stored.result.memory.peak_rss_bytes or 0) > 0


def test_decode_rate_matches_tokens_over_time(fake_model: Path) -> None:
    record = run_benchmark(
        BenchmarkConfig(setup=ModelSetup(str(fake_model), "fake"), max_new_tokens=5, repetitions=2, warmup=0)
    )
    with Store() as store:
        assert list(store.runs()) == []  # no store given: nothing saved
    for rep in record.repetitions:
        m = rep.metrics
        assert m.decode_tok_s == pytest.approx((m.output_tokens - 1) / m.decode_s)
        assert m.e2e_s >= m.ttft_s > 0


def test_failed_run_is_stored_with_its_repetitions(fake_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = FakeBackend.generate_tokens

    def failing(self, prompt_ids, config, on_token):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("device lost")
        return original(self, prompt_ids, config, on_token)

    monkeypatch.setattr(FakeBackend, "generate_tokens", failing)
    with Store() as store, pytest.raises(RuntimeError, match="device lost"):
        run_benchmark(BenchmarkConfig(setup=ModelSetup(str(fake_model), "fake"), warmup=0, repetitions=5), store=store)
    with Store() as store:
        (run,) = store.runs()
        full = store.get(run.id)
    assert full.status == "failed" and "device lost" in (full.error or "")
    assert isinstance(full.result, GenerationResult)
    assert len(full.repetitions) == 2 and full.result.summary["ttft_s"].count == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"repetitions": 0}, {"warmup": -1}, {"prompt_tokens": 0}, {"max_new_tokens": 0}, {"temperature": -1.0}],
)
def test_bad_options_fail_before_any_work(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(InvalidOptionError):
        BenchmarkConfig(**kwargs)  # type: ignore[arg-type]


def test_fake_rejects_nothing_but_real_backends_check_format(fake_model: Path) -> None:
    with pytest.raises(LLMBenchError, match="GGUF"):
        run_benchmark(BenchmarkConfig(setup=ModelSetup(str(fake_model), "llama.cpp")))
