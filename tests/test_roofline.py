"""The roofline: bounds against a hand computation, the work counted from a GGUF and a loaded module,
its stored form, its registry metrics, and every stored run of the bundled SmolLM2 carrying it."""

from __future__ import annotations

import math

import pytest

from llmbench.harness import _calibration
from llmbench.measurement import registry
from llmbench.measurement.metrics import Summary
from llmbench.measurement.results import GenerationResult, Roofline, result_from_json
from llmbench.models import ModelRef, read_gguf_header, read_spec
from llmbench.planning import DecodeWork, decode_work, roofline, scaled
from llmbench.system.calibrate import Calibration

WORK = DecodeWork(
    weight_bytes=1_000_000,
    matmul_params=400_000,
    head_params=100_000,
    layers=2,
    heads=4,
    kv_heads=2,
    head_dim=8,
    kv_element_bytes=2.0,
    device="cpu",
    weights="hand",
)


def test_bounds_match_a_hand_computation() -> None:
    figures = roofline(
        WORK, prompt_tokens=10, new_tokens=4, bandwidth_bytes_s=1e9, matmul_flops=1e10,
        decode_tok_s=250.0, prefill_tok_s=5000.0,
    )  # fmt: skip
    # KV per token: 2 (K, V) x 2 layers x 2 KV heads x 8 dims x 2 bytes = 128 B; context 10 + 4/2 = 12
    assert figures.decode_bytes_per_token == 1_000_000 + 128 * 12
    assert figures.decode_bound_tok_s == pytest.approx(1e9 / 1_001_536)
    # 2 x 400k matmul weights + 2 x 100k head / 10 prompt tokens + 2 x 2 layers x 4 heads x 8 dims x 11
    assert figures.prefill_flops_per_token == 800_000 + 20_000 + 1_408
    assert figures.prefill_bound_tok_s == pytest.approx(1e10 / 821_408)
    assert figures.decode_fraction == pytest.approx(250.0 * 1_001_536 / 1e9)
    assert figures.prefill_fraction == pytest.approx(5000.0 * 821_408 / 1e10)


def test_missing_rates_give_no_fraction_and_summaries_scale() -> None:
    figures = roofline(WORK, prompt_tokens=1, new_tokens=0, bandwidth_bytes_s=1e9, matmul_flops=1e9,
                       decode_tok_s=None, prefill_tok_s=math.inf)  # fmt: skip
    assert figures.decode_fraction is None and figures.prefill_fraction is None
    summary = Summary.of([10.0, 20.0, 30.0])
    fractions = scaled(summary, 100.0)
    assert fractions is not None and fractions.count == 3
    assert (fractions.mean, fractions.min, fractions.max, fractions.p50) == pytest.approx((0.2, 0.1, 0.3, 0.2))
    assert scaled(summary, None) is None and scaled(Summary.of([]), 1.0) is None


def test_gguf_work_counts_the_file_as_quantized(smollm2: ModelRef) -> None:
    spec = read_spec(smollm2)
    tensors = read_gguf_header(smollm2.path).tensors
    work = decode_work(smollm2, spec, "llama.cpp")
    assert work is not None and work.device == "cpu"
    assert not any(t.name == "output.weight" for t in tensors)  # SmolLM2 ties its output head to the embedding
    embedding = next(t for t in tensors if t.name == "token_embd.weight")
    assert work.weight_bytes == sum(t.n_bytes for t in tensors)  # the tied table is read whole by the head
    assert work.head_params == embedding.n_elements
    assert work.matmul_params == sum(t.n_elements for t in tensors) - embedding.n_elements
    assert work.kv_element_bytes == 2.0  # llama.cpp's f16 cache
    assert decode_work(smollm2, spec, "llama.cpp", options={"type_k": "q8_0", "type_v": "q8_0"}).kv_element_bytes == (  # type: ignore[union-attr]
        pytest.approx(34 / 32)
    )
    assert decode_work(smollm2, spec, "llama.cpp", options={"n_gpu_layers": 5}) is None  # split over two devices
    assert decode_work(smollm2, spec, "llama.cpp", options={"n_gpu_layers": -1}).device == "cuda:0"  # type: ignore[union-attr]
    assert decode_work(smollm2, spec, "fake") is None


@pytest.mark.parametrize("tied", [True, False])
def test_module_work_counts_loaded_parameter_bytes(tied: bool, tmp_path: object) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=100, tie_word_embeddings=tied,
    )  # fmt: skip
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    from llmbench.models import ModelSpec

    spec = ModelSpec(name="tiny", source="hf", path=tmp_path, num_layers=2, num_heads=4, num_kv_heads=2,  # type: ignore[arg-type]
                     head_dim=8, hidden_size=32, vocab_size=100)  # fmt: skip
    work = decode_work(ModelRef.__new__(ModelRef), spec, "transformers", model)
    assert work is not None and work.device == "cpu" and work.kv_element_bytes == 2.0
    params = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in params.values())
    embedding = 100 * 32
    assert total == sum(p.numel() for p in model.parameters())
    if tied:
        assert work.weight_bytes == total * 2  # the shared table is the output head: read whole
        assert work.matmul_params == total - embedding
    else:
        assert work.weight_bytes == (total - embedding) * 2  # the input table is only looked up
        assert work.matmul_params == total - 2 * embedding
    assert work.head_params == embedding


def test_stored_form_round_trips_and_older_rows_load() -> None:
    figures = Roofline(device="cpu", decode_fraction=0.5, prefill_fraction=0.25, decode_bound_tok_s=100.0)
    result = GenerationResult(
        roofline=figures, summary={"decode_roofline": Summary.of([0.5])}, sm_clock_mhz_before=1980
    )
    again = result_from_json("generate", result.to_json())
    assert isinstance(again, GenerationResult)
    assert again.roofline == figures and again.sm_clock_mhz_before == 1980 and not again.extra
    old = result_from_json("generate", {"summary": {"decode_tok_s": Summary.of([5.0]).as_dict()}, "load_s": 1.0})
    assert isinstance(old, GenerationResult) and old.roofline is None and old.sm_clock_mhz_after is None
    assert registry.BY_KEY["decode_roofline"].value(old) is None
    assert registry.BY_KEY["decode_roofline"].value(again) == pytest.approx(0.5)
    assert registry.BY_KEY["prefill_roofline"].unit == "fraction"
    keys = {column.key for column in registry.COLUMNS}
    assert {"decode_roofline", "prefill_roofline"} <= keys
    assert registry.DECODE_ROOFLINE in registry.GENERATION_SUMMARY


@pytest.fixture
def quick_calibration() -> object:
    """A real CPU calibration, measured once for the test (short sizes) and used by the runs."""
    from llmbench.system.calibrate import calibrate

    _calibration.forget_calibrations()
    measured = calibrate("cpu", repeats=3)
    _calibration._MEASURED["cpu"] = measured
    yield measured
    _calibration.forget_calibrations()


def test_every_stored_run_of_smollm2_carries_its_roofline(smollm2: ModelRef, quick_calibration: Calibration) -> None:
    from llmbench.harness import ModelSetup
    from llmbench.reports import load_runs, rows
    from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark
    from llmbench.store import Store

    config = BenchmarkConfig(
        setup=ModelSetup(model=str(smollm2.path), n_ctx=256), prompt_tokens=32, max_new_tokens=8, warmup=0,
        repetitions=2,
    )  # fmt: skip
    with Store() as store:
        run_benchmark(config, store)
        stored = list(store.runs(kind="generate"))
    assert stored
    for record in stored:
        result = record.result
        assert isinstance(result, GenerationResult) and result.roofline is not None
        assert 0 < (result.roofline.decode_fraction or 0) <= 1, result.roofline
        # the float32 matmul ceiling; llama.cpp's integer kernels could pass it on an idle machine
        assert (result.roofline.prefill_fraction or 0) > 0
        assert registry.DECODE_ROOFLINE.value(result) == pytest.approx(result.roofline.decode_fraction)
        assert record.environment["calibration"]["bandwidth_bytes_s"] == quick_calibration.bandwidth_bytes_s
        assert result.sm_clock_mhz_before is None  # no GPU here
    with Store() as store:
        table = rows(load_runs(store, run_ids=[record.id for record in stored]))
    assert table[0]["decode_roofline"] == pytest.approx(stored[0].result.roofline.decode_fraction)  # type: ignore[union-attr]


@pytest.mark.gpu
def test_a_gpu_run_has_its_roofline_and_clocks(smollm2: ModelRef) -> None:  # pragma: no cover - needs a CUDA GPU
    from llmbench.harness import ModelSetup
    from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(
        setup=ModelSetup(model=str(smollm2.path), n_ctx=512, options={"n_gpu_layers": -1}), prompt_tokens=64,
        max_new_tokens=16, warmup=1, repetitions=2,
    )  # fmt: skip
    record = run_benchmark(config)
    result = record.result
    assert isinstance(result, GenerationResult) and result.roofline is not None
    assert result.roofline.device == "cuda:0" and record.environment["calibration"]["device"] == "cuda:0"
    assert 0 < (result.roofline.decode_fraction or 0) <= 1
    assert result.sm_clock_mhz_before is not None and result.mem_clock_mhz_after is not None


def test_encoder_decoder_models_get_no_roofline_rather_than_a_wrong_one(tiny_t5_dir: object) -> None:
    """A seq2seq decode step reads the decoder only: counting the encoder's weights (and its layer
    count) would overstate the bound's bytes, so no fraction is given until the decoder is counted."""
    from llmbench.models import resolve_model

    model = resolve_model(str(tiny_t5_dir))
    spec = read_spec(model)
    assert spec.family == "seq2seq"
    assert decode_work(model, spec, "transformers") is None


def test_packed_4bit_weights_count_as_the_weights_they_stand_for() -> None:
    """bitsandbytes keeps two 4-bit weights per stored element; FLOPs count weights."""
    from types import SimpleNamespace

    from llmbench.planning._roofline import _weights

    packed = SimpleNamespace(numel=lambda: 512, quant_state=SimpleNamespace(shape=(32, 32)))
    plain = SimpleNamespace(numel=lambda: 512)
    assert _weights(packed) == 1024 and _weights(plain) == 512
