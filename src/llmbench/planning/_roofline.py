"""The roofline: how close a generation run came to what its device can do.

A decode step (one new token, batch 1) must read every weight it executes once, at the size it
is stored in memory, and the whole KV cache up to its position; nothing it computes can go faster
than the device's memory bandwidth allows. A prefill is a matrix product over all prompt tokens:
about two FLOPs per weight per token, plus attention; it cannot go faster than the device's
matmul throughput. With the device's measured ceilings (:mod:`llmbench.system.calibrate`)::

    decode bytes per step  = weights executed + kv_per_token x (prompt + new_tokens / 2)
    kv_per_token           = 2 (K and V) x layers x kv_heads x head_dim x bytes per KV element
    decode bound (tok/s)   = bandwidth / decode bytes per step
    prefill FLOPs / token  = 2 x matmul weights + 2 x output-head weights / prompt
                             + 2 x layers x heads x head_dim x (prompt + 1)
    prefill bound (tok/s)  = matmul FLOP/s / prefill FLOPs per token
    fraction               = measured tok/s / bound

"Weights executed": every weight a token's forward pass multiplies, counted once. The input
embedding table is looked up (one row per token), not read, so it is left out, unless the output
head shares it (tied embeddings), in which case the head's matrix product reads all of it. The
output head runs for the last prompt position only during a prefill (llama.cpp and transformers'
``generate`` both compute the logits of the last position), hence its weights divided by the prompt
length. The attention term is the causal ``Q K^T`` and ``A V`` products: ``4 x head_dim`` FLOPs per
head and layer per position attended, averaged over the prompt's ``(prompt + 1) / 2`` positions.
The KV cache of a decode step is taken at the mean context of the generation, the prompt plus
half the new tokens.

Weights are counted as stored in memory: a GGUF's tensor bytes on llama.cpp (the quantized blocks
as they are), the loaded module's parameter bytes on transformers (its dtype; bitsandbytes' packed
bytes), else the parameter count x the requested dtype's bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from llmbench.measurement.metrics import Summary
from llmbench.measurement.results import Roofline
from llmbench.models import KV_CACHE_TYPES, ModelRef, ModelSpec, read_gguf_header
from llmbench.planning._plan import DTYPE_BYTES

KV_BYTES = {**DTYPE_BYTES, **{name: kind.bytes_per_element for name, kind in KV_CACHE_TYPES.items()}}
"""Bytes per KV-cache element by type (GGML block types: block bytes / 32 elements)."""
_GGML_KV_TYPES = {kind.code: name for name, kind in KV_CACHE_TYPES.items()}


@dataclass(frozen=True)
class DecodeWork:
    """What a model costs per token on its backend: the inputs of :func:`roofline`."""

    weight_bytes: int
    """Bytes of the weights one decode step reads (executed weights, at their stored size)."""
    matmul_params: int
    """Weights in the per-token matrix products of a prefill (output head and lookups excluded)."""
    head_params: int
    """Weights of the output head (run once per prefill, for the last position)."""
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    kv_element_bytes: float
    device: str
    """``cpu`` or ``cuda:N``: the device whose calibration applies."""
    weights: str
    """How ``weight_bytes`` was counted, for people."""

    @property
    def kv_bytes_per_token(self) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.kv_element_bytes


def roofline(
    work: DecodeWork,
    *,
    prompt_tokens: int,
    new_tokens: float,
    bandwidth_bytes_s: float,
    matmul_flops: float,
    decode_tok_s: float | None,
    prefill_tok_s: float | None,
    calibrated_at: str | None = None,
) -> Roofline:
    """The bounds of ``work`` on a device with these ceilings, and the measured rates as fractions of them."""
    context = prompt_tokens + new_tokens / 2
    decode_bytes = work.weight_bytes + work.kv_bytes_per_token * context
    attention = 2 * work.layers * work.heads * work.head_dim * (prompt_tokens + 1)
    prefill_flops = 2 * work.matmul_params + 2 * work.head_params / max(prompt_tokens, 1) + attention
    decode_bound = bandwidth_bytes_s / decode_bytes if decode_bytes > 0 else math.inf
    prefill_bound = matmul_flops / prefill_flops if prefill_flops > 0 else math.inf
    return Roofline(
        device=work.device,
        decode_bytes_per_token=decode_bytes,
        prefill_flops_per_token=prefill_flops,
        decode_bound_tok_s=decode_bound,
        prefill_bound_tok_s=prefill_bound,
        decode_fraction=_fraction(decode_tok_s, decode_bound),
        prefill_fraction=_fraction(prefill_tok_s, prefill_bound),
        bandwidth_bytes_s=bandwidth_bytes_s,
        matmul_flops=matmul_flops,
        calibrated_at=calibrated_at,
        weights=work.weights,
    )


def _fraction(rate: float | None, bound: float) -> float | None:
    if rate is None or not math.isfinite(rate) or not math.isfinite(bound) or bound <= 0:
        return None
    return rate / bound


def scaled(summary: Summary | None, bound: float | None) -> Summary | None:
    """A rate's summary as fractions of ``bound`` (every statistic divides by it; std too)."""
    if summary is None or not summary.count or bound is None or not math.isfinite(bound) or bound <= 0:
        return None
    return replace(
        summary,
        mean=summary.mean / bound,
        std=summary.std / bound,
        min=summary.min / bound,
        max=summary.max / bound,
        p50=summary.p50 / bound,
        p90=summary.p90 / bound,
        p99=summary.p99 / bound,
    )


# -- the work of a loaded model --------------------------------------------------------------------


def _shape(spec: ModelSpec) -> tuple[int, int, int, int] | None:
    layers, kv_heads, head_dim = spec.num_layers, spec.num_kv_heads, spec.head_dim
    heads = spec.num_heads or kv_heads
    if head_dim is None and spec.hidden_size and heads:
        head_dim = spec.hidden_size // heads
    if not (layers and heads and kv_heads and head_dim):
        return None
    return layers, heads, kv_heads, head_dim


def gguf_work(spec: ModelSpec, device: str, options: dict[str, Any] | None = None) -> DecodeWork | None:
    """A GGUF on llama.cpp: the file's tensor bytes as quantized; the KV cache at ``type_k``/``type_v`` (f16)."""
    shape = _shape(spec)
    if shape is None:
        return None
    tensors = read_gguf_header(spec.path).tensors
    output = [t for t in tensors if t.name == "output.weight"]
    lookups = [t for t in tensors if t.name in ("token_embd.weight", "position_embd.weight", "token_types.weight")]
    embedding = next((t for t in lookups if t.name == "token_embd.weight"), None)
    head = output[0] if output else embedding
    total_bytes = sum(t.n_bytes for t in tensors)
    looked_up = [t for t in lookups if t is not head]
    weight_bytes = total_bytes - sum(t.n_bytes for t in looked_up)
    head_params = head.n_elements if head is not None else 0
    matmul_params = (
        sum(t.n_elements for t in tensors) - sum(t.n_elements for t in lookups) - (head_params if output else 0)
    )
    options = options or {}
    kv = (_kv_name(options.get("type_k")) or "f16", _kv_name(options.get("type_v")) or "f16")
    kv_bytes = (KV_BYTES.get(kv[0], 2.0) + KV_BYTES.get(kv[1], 2.0)) / 2
    layers, heads, kv_heads, head_dim = shape
    tied = "tied output head" if not output else "separate output head"
    return DecodeWork(
        weight_bytes, matmul_params, head_params, layers, heads, kv_heads, head_dim, kv_bytes, device,
        f"GGUF tensor bytes as stored ({spec.dtype or 'mixed'}), input embedding lookups excluded ({tied});"
        f" KV cache {kv[0]}/{kv[1]}",
    )  # fmt: skip


def _kv_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return _GGML_KV_TYPES.get(int(value))
    return str(value).lower()


def module_work(spec: ModelSpec, module: Any, device: str | None = None) -> DecodeWork | None:
    """A loaded torch module: its parameters' bytes at the loaded dtype (tied tensors counted once)."""
    shape = _shape(spec)
    if shape is None:
        return None
    import torch

    seen: dict[int, Any] = {}
    for parameter in module.parameters():
        seen.setdefault(id(parameter), parameter)
    output = _weight(getattr(module, "get_output_embeddings", lambda: None)())
    lookups = {
        id(m.weight): m.weight
        for m in module.modules()
        if isinstance(m, torch.nn.Embedding) and (output is None or m.weight is not output)
    }

    def size(p: Any) -> int:
        return int(p.numel() * p.element_size())  # stored bytes: a packed 4-bit tensor's are half its weights

    weight_bytes = sum(size(p) for key, p in seen.items() if key not in lookups)
    head_params = _weights(output) if output is not None else 0
    all_params = sum(_weights(p) for p in seen.values())
    matmul_params = all_params - sum(_weights(p) for p in lookups.values()) - head_params
    floating = next((p for p in seen.values() if p.is_floating_point()), None)
    kv_bytes = float(floating.element_size()) if floating is not None else 2.0
    devices = {str(p.device) for p in seen.values()}
    where = device or (devices.pop() if len(devices) == 1 else None)
    if where is None or where == "meta":
        return None  # spread over several devices: no single ceiling applies
    dtype = str(floating.dtype).removeprefix("torch.") if floating is not None else "?"
    layers, heads, kv_heads, head_dim = shape
    return DecodeWork(
        weight_bytes, matmul_params, head_params, layers, heads, kv_heads, head_dim, kv_bytes,
        "cpu" if where == "cpu" else where if ":" in where else f"{where}:0",
        f"loaded parameters' bytes ({dtype}), input embedding lookups excluded",
    )  # fmt: skip


def _weights(parameter: Any) -> int:
    """Weights a tensor stands for: a bitsandbytes 4-bit tensor packs two in a byte, and its
    ``quant_state`` keeps the unpacked shape (FLOPs count weights, not stored elements)."""
    state = getattr(parameter, "quant_state", None)
    shape = getattr(state, "shape", None)
    return int(math.prod(shape)) if shape is not None else int(parameter.numel())


def _weight(module: Any) -> Any:
    return getattr(module, "weight", None) if module is not None else None


def estimated_work(
    spec: ModelSpec, params_total: int, embedding: int, dtype: str | None, device: str
) -> DecodeWork | None:
    """Without a loaded module: parameter count x the dtype's bytes (float32 when unknown)."""
    shape = _shape(spec)
    if shape is None:
        return None
    key = (dtype or spec.dtype or "float32").lower()
    element = DTYPE_BYTES.get(key, 4.0 if key in ("auto", "") else 2.0)
    tied = spec.tied_embeddings is not False
    executed = params_total - embedding + (embedding if tied else 0)
    layers, heads, kv_heads, head_dim = shape
    head_params = embedding if tied else (spec.vocab_size or 0) * (spec.hidden_size or heads * head_dim)
    return DecodeWork(
        int(executed * element), max(executed - head_params, 0), head_params, layers, heads, kv_heads, head_dim,
        element, device, f"{executed:,} parameters x {element:g} bytes ({key}), estimated",
    )  # fmt: skip


def decode_work(
    model: ModelRef, spec: ModelSpec, backend: str, module: Any = None, *, dtype: str | None = None,
    device: str | None = None, options: dict[str, Any] | None = None,
) -> DecodeWork | None:  # fmt: skip
    """The work per token of ``model`` as ``backend`` runs it; None when it cannot be counted here
    (a remote server, a fake backend, weights spread over several devices, llama.cpp partly offloaded)."""
    options = options or {}
    if spec.family != "causal":
        return None  # a decode step of a seq2seq or vision model reads its decoder only: not counted yet
    if backend == "llama.cpp" and model.format == "gguf":
        where = _llama_device(spec, device, options)
        return gguf_work(spec, where, options) if where is not None else None
    if module is not None:
        return module_work(spec, module)
    if backend in ("transformers", "vllm") and model.format == "hf":
        from llmbench.models import count_parameters

        params = count_parameters(spec)
        where = "cpu" if device in (None, "cpu") else "cuda:0" if device in ("cuda", "auto") else device
        return estimated_work(spec, params.total, params.embedding, dtype, where)
    return None


def _llama_device(spec: ModelSpec, device: str | None, options: dict[str, Any]) -> str | None:
    raw = options.get("n_gpu_layers", -1 if device in ("cuda", "gpu") else 0)
    try:
        layers_on_gpu = int(raw)
    except (TypeError, ValueError):
        return None
    if layers_on_gpu == 0:
        return "cpu"
    if layers_on_gpu < 0 or layers_on_gpu > (spec.num_layers or 0):
        return "cuda:0"
    return None  # partly offloaded: two devices, no single ceiling
