"""Quantization, attention, cache and compile settings as plain ``-o`` options: values checked, what
the machine cannot serve refused in one line before the model loads, and the ones this CPU can run
really run (eager vs sdpa on the bundled SmolLM2, a static cache on a tiny llama)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import one_line_error, run_cli
from llmbench.backends.base import LoadOptions
from llmbench.errors import BackendUnavailableError, InvalidOptionError
from llmbench.models import ModelRef, resolve_model


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


no_cuda = pytest.mark.skipif(_cuda(), reason="checks the refusal on a machine without CUDA")


@pytest.fixture
def no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: a refusal must come before it."""
    from llmbench.backends.transformers import _backend

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded before the setting was refused")

    monkeypatch.setattr(_backend, "load_model", refuse)
    monkeypatch.setattr(_backend, "_import_runtime", refuse)


def _open(model: ModelRef, **extra: Any) -> Any:
    from llmbench.backends.transformers import TransformersBackend

    return TransformersBackend(model, LoadOptions(extra=extra))


@pytest.fixture(scope="module")
def gptq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama config carrying a GPTQ quantization_config (no weights: inspect and plan need none)."""
    folder = tmp_path_factory.mktemp("tiny-gptq")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# -- bitsandbytes -------------------------------------------------------------------------------


def test_bitsandbytes_settings_are_checked_and_default_to_the_qlora_config() -> None:
    from llmbench.backends.transformers._load import bitsandbytes_settings

    assert bitsandbytes_settings({}) is None
    assert bitsandbytes_settings({"quantization": "bnb-4bit"}) == {
        "method": "bnb-4bit",
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bfloat16",
    }
    custom = bitsandbytes_settings(
        {"quantization": "bnb-4bit", "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": "false",
         "bnb_4bit_compute_dtype": "float16"}
    )  # fmt: skip
    assert custom is not None
    assert (custom["bnb_4bit_quant_type"], custom["bnb_4bit_use_double_quant"]) == ("fp4", False)
    assert bitsandbytes_settings({"quantization": "bnb-8bit", "llm_int8_threshold": 4}) == {
        "method": "bnb-8bit",
        "llm_int8_threshold": 4.0,
    }
    refused = [
        ({"quantization": "bnb-3bit"}, "unknown quantization"),
        ({"quantization": "bnb-4bit", "bnb_4bit_quant_type": "int3"}, "bnb_4bit_quant_type"),
        ({"quantization": "bnb-4bit", "bnb_4bit_compute_dtype": "int8"}, "bnb_4bit_compute_dtype"),
        ({"quantization": "bnb-4bit", "bnb_4bit_use_double_quant": "maybe"}, "true or false"),
        ({"quantization": "bnb-8bit", "llm_int8_threshold": "high"}, "must be a number"),
        ({"quantization": "bnb-8bit", "llm_int8_threshold": -1}, "at least 0"),
        ({"quantization": "bnb-8bit", "bnb_4bit_quant_type": "nf4"}, "does not apply"),
        ({"bnb_4bit_quant_type": "nf4"}, "needs -o quantization=bnb-4bit"),
        ({"llm_int8_threshold": 6.0}, "needs -o quantization=bnb-8bit"),
    ]
    for extra, needle in refused:
        with pytest.raises(InvalidOptionError, match=needle):
            bitsandbytes_settings(extra)


@no_cuda
@pytest.mark.parametrize("method", ["bnb-4bit", "bnb-8bit"])
def test_bitsandbytes_without_cuda_is_refused_before_loading(tiny_llama_dir: Path, no_load: None, method: str) -> None:
    with pytest.raises(BackendUnavailableError) as caught:
        _open(resolve_model(str(tiny_llama_dir)), quantization=method)
    message = str(caught.value)
    assert f"quantization={method} needs a CUDA GPU" in message
    assert "CPU-only" in message or "no NVIDIA GPU" in message


@no_cuda
def test_flash_attention_without_cuda_is_refused_in_one_line(tiny_llama_dir: Path) -> None:
    code, _, stderr = run_cli(
        "run", str(tiny_llama_dir), "-o", "attn_implementation=flash_attention_2", "-p", "8", "-n", "2", "-r", "1"
    )
    line = one_line_error(code, stderr, "flash_attention_2 needs a CUDA GPU", "flash-attn")
    assert "llmbench doctor" in line


def test_a_missing_kernel_package_is_named(monkeypatch: pytest.MonkeyPatch, tiny_llama_dir: Path) -> None:
    """With CUDA present (pretended), the missing package alone is named."""
    from llmbench.system import support

    monkeypatch.setattr(support, "cuda_state", lambda: (True, "pretend"))
    monkeypatch.setattr(support, "package_state", lambda package: ("missing", "not installed"))
    with pytest.raises(BackendUnavailableError) as caught:
        support.require("-o quantization=bnb-4bit", cuda=True, packages=(support.BITSANDBYTES,))
    assert str(caught.value).startswith("-o quantization=bnb-4bit needs bitsandbytes (not installed)")
    assert "CUDA" not in caught.value.message


def test_unknown_attention_is_refused() -> None:
    from llmbench.backends.transformers._load import load_kwargs

    with pytest.raises(
        InvalidOptionError, match=r"unknown attn_implementation 'flash'.*eager, sdpa, flash_attention_2"
    ):
        load_kwargs(resolve_model(None), LoadOptions(extra={"attn_implementation": "flash"}), 1)


def test_doctor_lists_kernels_through_the_shared_check() -> None:
    from llmbench.system.doctor import diagnose

    areas = {finding.area: finding for finding in diagnose()}
    assert areas["kernels.peft"].status == "ok"
    assert "kernels.gptqmodel" in areas and "kernels.optimum" in areas


# -- GPTQ / AWQ checkpoints ---------------------------------------------------------------------


def test_gptq_checkpoint_without_its_kernels_is_refused_before_loading(gptq_dir: Path, no_load: None) -> None:
    from llmbench.system.support import GPTQMODEL, OPTIMUM, package_state

    if package_state(OPTIMUM)[0] == "ok" and package_state(GPTQMODEL)[0] == "ok":
        pytest.skip("GPTQ kernels are installed here")
    with pytest.raises(BackendUnavailableError, match=r"a GPTQ checkpoint, needs .*(optimum|gptqmodel)"):
        _open(resolve_model(str(gptq_dir)))


def test_gptq_checkpoint_is_inspected_and_planned_at_its_bits(gptq_dir: Path) -> None:
    from llmbench.models import count_parameters, inspect_model, read_spec
    from llmbench.planning._plan import PlanRequest, plan_memory

    inspection = inspect_model(str(gptq_dir))
    data = inspection.as_dict()
    assert data["quantization_scheme"] == "GPTQ 4-bit, group size 128"
    assert data["quantization"]["bits"] == 4
    spec = read_spec(resolve_model(str(gptq_dir)))
    params = count_parameters(spec)
    plan = plan_memory(spec, params, PlanRequest(backend="transformers", context=256))
    linear, other = params.non_embedding, params.embedding
    expected = int(linear * (4 / 8 + (2 + 4 / 8) / 128) + other * 2)
    assert plan.term("weights") == expected
    assert plan.weights_format == "gptq-4bit"
    assert plan.term("weights") < params.total * 2 / 2  # well under half of float16
    code, stdout, _ = run_cli("inspect", str(gptq_dir))
    assert code == 0 and "GPTQ 4-bit, group size 128" in stdout


# -- eager vs sdpa, really run --------------------------------------------------------------------


@pytest.mark.slow
def test_eager_and_sdpa_give_the_same_greedy_text_and_are_both_stored(smollm2: ModelRef) -> None:
    from llmbench.store import Store

    texts = {}
    for attention in ("eager", "sdpa"):
        code, stdout, stderr = run_cli(
            "run", str(smollm2.path), "--backend", "transformers", "-o", f"attn_implementation={attention}",
            "-p", "16", "-n", "4", "-w", "0", "-r", "1", "-t", "1", "--format", "json",
        )  # fmt: skip
        assert code == 0, stderr
        row = json.loads(stdout)
        assert row["config"]["options"] == {"attn_implementation": attention}
        texts[attention] = row["metrics"]["sample_text"]
    assert texts["eager"] == texts["sdpa"]
    stored = {record.config["options"]["attn_implementation"] for record in Store().runs()}
    assert stored == {"eager", "sdpa"}


# -- cache implementation and torch.compile -----------------------------------------------------


def test_cache_and_compile_values_are_checked() -> None:
    from llmbench.backends.transformers._settings import generation_settings

    assert generation_settings({}, 2048).generation_kwargs() == {"disable_compile": True}
    static = generation_settings({"cache_implementation": "static"}, 512)
    assert static.max_cache_len == 512
    assert generation_settings({"cache_implementation": "static", "max_cache_len": 64}, 512).max_cache_len == 64
    refused = [
        ({"cache_implementation": "paged"}, "unknown cache_implementation"),
        ({"max_cache_len": 64}, "sizes a static cache"),
        ({"cache_implementation": "static", "max_cache_len": "long"}, "whole number"),
        ({"torch_compile": "maybe"}, "true or false"),
        ({"torch_compile": True, "compile_mode": "fastest"}, "unknown compile_mode"),
        ({"compile_mode": "reduce-overhead"}, "needs -o torch_compile=true"),
    ]
    for extra, needle in refused:
        with pytest.raises(InvalidOptionError, match=needle):
            generation_settings(extra, 2048)


@no_cuda
def test_offloaded_cache_without_cuda_is_refused_before_loading(tiny_llama_dir: Path, no_load: None) -> None:
    with pytest.raises(BackendUnavailableError, match="cache_implementation=offloaded needs a CUDA GPU"):
        _open(resolve_model(str(tiny_llama_dir)), cache_implementation="offloaded")


@no_cuda
def test_cuda_event_check_without_cuda_is_refused_before_loading(tiny_llama_dir: Path, no_load: None) -> None:
    with pytest.raises(BackendUnavailableError, match="cuda_event_check=true needs a CUDA GPU"):
        _open(resolve_model(str(tiny_llama_dir)), cuda_event_check="true")


def test_cuda_event_check_rate_is_tokens_after_the_first_over_the_device_time() -> None:
    """The cross-check's arithmetic, on stand-in events: 4 tokens, events 30 ms apart -> 3 / 0.09 s."""
    from types import SimpleNamespace

    from llmbench.backends.transformers._settings import cuda_event_stamps

    clock = iter(range(0, 1000, 30))

    class Event:
        def __init__(self, enable_timing: bool) -> None:
            self.at = 0.0

        def record(self) -> None:
            self.at = float(next(clock))

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, later: Event) -> float:
            return later.at - self.at  # milliseconds, as torch's

    seen: list[int] = []
    stamped, rate = cuda_event_stamps(SimpleNamespace(cuda=SimpleNamespace(Event=Event)), seen.append)
    assert rate() is None
    for token in (5, 6, 7, 8):
        stamped(token)
    assert seen == [5, 6, 7, 8] and rate() == pytest.approx(3 / 0.090)


def test_static_cache_runs_on_cpu_with_the_same_greedy_text(tiny_llama_dir: Path) -> None:
    from llmbench.backends.base import GenerationConfig

    model = resolve_model(str(tiny_llama_dir))
    config = GenerationConfig(max_new_tokens=6, force_new_tokens=True)
    texts = []
    for extra in ({}, {"cache_implementation": "static", "max_cache_len": 64}):
        with _open(model, **extra) as backend:
            texts.append(backend.generate("The quick brown fox", config).token_ids)
    assert texts[0] == texts[1]
    with (
        _open(model, cache_implementation="static", max_cache_len=16) as backend,
        pytest.raises(InvalidOptionError, match="max_cache_len"),
    ):
        backend.generate("The quick brown fox jumps over the lazy dog", GenerationConfig(max_new_tokens=12))


@pytest.mark.gpu
def test_torch_compile_is_timed_apart_and_keeps_the_greedy_text(tiny_llama_dir: Path) -> None:
    """Compiling even a tiny llama takes minutes on this 2-core CPU, so this runs on a GPU machine."""
    from llmbench.harness import ModelSetup
    from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark

    texts = []
    for options in ({"cache_implementation": "static"}, {"cache_implementation": "static", "torch_compile": True}):
        setup = ModelSetup(model=str(tiny_llama_dir), device="cuda", n_ctx=128, options=options)
        record = run_benchmark(BenchmarkConfig(setup=setup, prompt_tokens=16, max_new_tokens=8, repetitions=2))
        texts.append(record.result.sample_text)  # type: ignore[union-attr]
        if "torch_compile" in options:
            assert record.config["compile_s"] > 0
            assert record.result.load_s >= record.config["compile_s"]  # type: ignore[union-attr]
    assert texts[0] == texts[1]


# -- llama.cpp GPU settings -------------------------------------------------------------------------


def test_llama_cpp_kv_types_and_flash_attention_are_checked(smollm2: ModelRef) -> None:
    from llmbench.backends.llama_cpp import _load_kwargs

    kwargs = _load_kwargs(smollm2, LoadOptions(extra={"type_k": "q8_0", "type_v": "q4_1", "flash_attn": True}), 1)
    assert (kwargs["type_k"], kwargs["type_v"], kwargs["flash_attn"]) == (8, 3, True)
    with pytest.raises(InvalidOptionError, match="unknown type_k 'q3'"):
        _load_kwargs(smollm2, LoadOptions(extra={"type_k": "q3"}), 1)
    with pytest.raises(InvalidOptionError, match=r"quantized V cache .* needs flash attention"):
        _load_kwargs(smollm2, LoadOptions(extra={"type_v": "q8_0"}), 1)


def test_llama_cpp_gpu_layers_on_a_cpu_build_are_reported_not_offloaded(smollm2: ModelRef) -> None:
    import llama_cpp

    from llmbench.backends.base import GenerationConfig
    from llmbench.backends.llama_cpp import LlamaCppBackend

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama.cpp build offloads to a GPU")
    options = LoadOptions(n_ctx=256, extra={"n_gpu_layers": 10, "flash_attn": True, "type_k": "q8_0", "type_v": "q8_0"})
    with LlamaCppBackend(smollm2, options) as backend:
        assert backend.load_facts["gpu_layers_offloaded"] == 0
        assert "cannot offload" in backend.load_facts["gpu_offload"]
        assert backend.generate("Hello", GenerationConfig(max_new_tokens=3, force_new_tokens=True)).output_tokens == 3


def test_llama_cpp_offload_facts_are_stored_with_the_run(smollm2: ModelRef) -> None:
    from llmbench.harness import ModelSetup
    from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark

    setup = ModelSetup(n_ctx=128, threads=1, options={"n_gpu_layers": -1})
    record = run_benchmark(BenchmarkConfig(setup=setup, prompt_tokens=8, max_new_tokens=2, warmup=0, repetitions=1))
    assert "gpu_layers_offloaded" in record.config
    plain = run_benchmark(
        BenchmarkConfig(
            setup=ModelSetup(n_ctx=128, threads=1), prompt_tokens=8, max_new_tokens=2, warmup=0, repetitions=1
        )
    )
    assert "gpu_layers_offloaded" not in plain.config
