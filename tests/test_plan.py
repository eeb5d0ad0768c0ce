"""The memory plan: formulas, and estimates against peaks that ``llmbench run`` measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, run_cli
from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef, resolve_model
from llmbench.models._params import count_parameters
from llmbench.models._spec import read_spec
from llmbench.planning import PlanRequest, bits_per_weight, plan_memory

MiB = 1 << 20


def _plan(model: Path | str, **request: object):  # type: ignore[no-untyped-def]
    spec = read_spec(resolve_model(model))
    return plan_memory(spec, count_parameters(spec), PlanRequest(**request))  # type: ignore[arg-type]


def test_llama_2_7b_kv_cache_is_half_a_mib_per_token_in_fp16() -> None:
    plan = _plan(DATA / "llama-2-7b-style", backend="transformers", context=4096, dtype="float16")
    assert plan.kv_bytes_per_token() == 0.5 * MiB
    assert plan.term("kv_cache") == 4096 * 0.5 * MiB
    assert plan.term("weights") == 6_738_415_616 * 2


def test_weight_formats() -> None:
    llama = DATA / "llama-2-7b-style"
    params = 6_738_415_616
    embedding = 32000 * 4096
    assert _plan(llama, backend="transformers", context=1, dtype="float32").term("weights") == params * 4
    assert _plan(llama, backend="transformers", context=1, dtype="bfloat16").term("weights") == params * 2
    int8 = _plan(llama, backend="transformers", context=1, dtype="int8").term("weights")
    assert int8 == int((params - embedding) * 1 + embedding * 2)
    int4 = _plan(llama, backend="transformers", context=1, dtype="int4").term("weights")
    assert int4 == int((params - embedding) * 4.5 / 8 + embedding * 2)
    q4_k = _plan(llama, backend="llama.cpp", context=1, dtype="Q4_K").term("weights")
    assert q4_k == int(params * 4.5 / 8)


def test_bits_per_weight_from_block_layout() -> None:
    assert bits_per_weight("Q4_0") == 4.5  # 32 weights in 18 bytes
    assert bits_per_weight("Q4_1") == 5.0  # 32 weights in 20 bytes
    assert bits_per_weight("Q8_0") == 8.5
    assert bits_per_weight("Q4_K") == 4.5 and bits_per_weight("Q6_K") == 6.5625
    assert bits_per_weight("F16") == 16
    with pytest.raises(InvalidOptionError, match="unknown GGUF quantization type"):
        bits_per_weight("Q9_Z")


def test_gguf_weights_are_exact_on_llama_cpp(smollm2: ModelRef) -> None:
    from llmbench.models._gguf import read_gguf_header

    plan = _plan(smollm2.path, backend="llama.cpp", context=2048)
    assert plan.term("weights") == sum(t.n_bytes for t in read_gguf_header(smollm2.path).tensors)
    assert plan.kv_bytes_per_token() == 2 * 30 * 3 * 64 * 2


def test_scoring_keeps_logits_for_every_position() -> None:
    llama = DATA / "llama-2-7b-style"
    generate = _plan(llama, backend="transformers", context=512, batch=2)
    score = _plan(llama, backend="transformers", context=512, batch=2, purpose="score")
    assert generate.term("logits") == 2 * 32000 * 4
    assert score.term("logits") == 2 * 512 * 32000 * 4


def test_fit_verdict() -> None:
    llama = DATA / "llama-2-7b-style"
    assert _plan(llama, backend="transformers", context=4096, dtype="float16", device="gpu", device_bytes=24 << 30).fits
    assert not _plan(
        llama, backend="transformers", context=4096, dtype="float32", device="gpu", device_bytes=24 << 30
    ).fits
    code, out, _ = run_cli("plan", str(llama), "--dtype", "int4", "--device", "GPU:8GiB", "--format", "json")
    assert code == 0 and json.loads(out)["fits"] is True and json.loads(out)["device_bytes"] == 8 << 30
    code, out, _ = run_cli("plan", str(llama), "--dtype", "int4", "--device", "GPU:8GB", "--format", "json")
    assert json.loads(out)["device_bytes"] == 8 * 10**9


def _measured_error(model: str, backend: str, run_args: list[str], plan_args: list[str]) -> float:
    code, _, err = run_cli("run", model, "--backend", backend, *run_args, "-r", "1", "-w", "0", "--format", "json")
    assert code == 0, err
    code, out, err = run_cli("plan", model, "--backend", backend, *plan_args, "--format", "json")
    assert code == 0, err
    measured = json.loads(out)["measured"]
    assert measured is not None, "the plan did not find the measured run"
    return float(measured["error"])


@pytest.mark.slow
def test_plan_within_10_percent_of_llama_cpp_peak(smollm2: ModelRef) -> None:
    error = _measured_error(str(smollm2.path), "llama.cpp", ["--n-ctx", "2048", "-p", "128", "-n", "32"],
                            ["--context", "2048", "--prompt", "128"])  # fmt: skip
    assert abs(error) <= 0.10, error


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_plan_within_10_percent_of_transformers_peak(smollm2_hf_dir: Path, dtype: str) -> None:
    error = _measured_error(
        str(smollm2_hf_dir), "transformers", ["--dtype", dtype, "-p", "128", "-n", "32"],
        ["--dtype", dtype, "--context", "160", "--prompt", "128"],
    )  # fmt: skip
    assert abs(error) <= 0.10, error
