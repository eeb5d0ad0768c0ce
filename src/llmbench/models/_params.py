"""Exact parameter counts without loading weights.

* HF folders whose architecture transformers knows: the model is built on the meta device
  (``accelerate.init_empty_weights``) and its parameters counted, shared (tied) tensors once,
  exactly as ``sum(p.numel() for p in model.parameters())`` counts the real model.
* Otherwise the tensor shapes in the safetensors headers or the GGUF header are summed.
* PEFT LoRA adapters: the trainable parameters ``r x (in + out)`` of every targeted linear layer
  of the base model (built on the meta device), plus ``modules_to_save`` and trainable biases.

"Embedding" parameters are those of the token, position and token-type embedding tables; an
untied output projection counts as non-embedding (it is a matrix multiply every token pays for).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidModelError, LLMBenchError
from llmbench.models._spec import ModelSpec, quiet_transformers, transformers_config

_EMBEDDING_NAMES = re.compile(
    r"(^|\.)(embed_tokens|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings|shared|"
    r"embed_positions|tok_embeddings|token_embd|position_embd|token_types)(\.weight)?$"
)


@dataclass(frozen=True)
class ParameterCount:
    total: int
    embedding: int
    method: str
    trainable_adapter: int | None = None
    """LoRA parameters an adapter adds (and trains), for adapter specs."""

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


def count_parameters(spec: ModelSpec) -> ParameterCount:
    """Exact parameter count of the model ``spec`` describes (for an adapter: of its base)."""
    if spec.source == "gguf":
        return _from_gguf(spec.path)
    if spec.source == "adapter":
        return _adapter_count(spec)
    model = meta_model(spec.path)
    if model is not None:
        return _from_module(model)
    safetensors = sorted(spec.path.glob("*.safetensors"))
    if safetensors:
        return _from_safetensors(safetensors)
    raise InvalidModelError(
        f"unknown architecture {spec.model_type or spec.architecture or '?'!r} in {spec.path / 'config.json'}",
        "this transformers does not know it and the folder has no safetensors weights to count from",
    )


def meta_model(folder: Path) -> Any | None:
    """The model of ``folder`` built on the meta device (no memory), or None if transformers can't.

    A model class that takes the config but fails to build from it (sizes that do not fit
    together) is an :class:`InvalidModelError` with the reason.
    """
    config = transformers_config(folder)
    if config is None:
        return None
    import transformers
    from accelerate import init_empty_weights

    architectures = getattr(config, "architectures", None) or []
    candidates: list[Any] = [
        getattr(transformers, name) for name in architectures if isinstance(name, str) and hasattr(transformers, name)
    ]
    candidates += [transformers.AutoModelForCausalLM, transformers.AutoModelForSeq2SeqLM, transformers.AutoModel]
    refused: Exception | None = None
    for cls in candidates:
        if cls.__name__.startswith("Auto") and type(config) not in cls._model_mapping:
            continue  # this kind of model has no class for the architecture
        try:  # buffers too on the meta device: a config may size one (a causal mask, rotary tables) in GB
            with quiet_transformers(), init_empty_weights(include_buffers=True):
                model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls(config)
        except Exception as exc:  # the class takes the config, but its sizes break the model's construction
            refused = exc
            continue
        # from_pretrained ties shared tensors, a bare constructor may not; outside init_empty_weights,
        # whose patched register_parameter would copy the tied tensor.
        model.tie_weights()
        return model
    if refused is not None:
        reason = " ".join(str(refused).split())[:160] or type(refused).__name__
        raise InvalidModelError(
            f"cannot build the model {folder / 'config.json'} describes ({reason})",
            "check its sizes (hidden size, heads, layers) or re-download config.json",
        )
    return None


def _from_module(model: Any) -> ParameterCount:
    import torch

    total = sum(p.numel() for p in model.parameters())
    seen: set[int] = set()
    embedding = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            embedding += module.weight.numel()
    return ParameterCount(int(total), int(embedding), "meta-device model (transformers)")


def _from_safetensors(files: list[Path]) -> ParameterCount:
    total = embedding = 0
    for path in files:
        for name, info in _safetensors_header(path).items():
            if name == "__metadata__":
                continue
            shape = info.get("shape") if isinstance(info, dict) else None
            if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
                raise InvalidModelError(
                    f"{path} has a corrupt safetensors header (tensor {name[:60]!r} has no valid shape)",
                    "re-download the weights",
                )
            count = 1
            for dim in shape:
                count *= dim
            total += count
            if _EMBEDDING_NAMES.search(name):
                embedding += count
    return ParameterCount(total, embedding, "safetensors headers")


def _safetensors_header(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                raise ValueError(f"header length {length}")
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise InvalidModelError(
            f"{path} has a corrupt safetensors header ({reason})", "re-download the weights"
        ) from None
    if not isinstance(header, dict):
        raise InvalidModelError(f"{path} has a corrupt safetensors header", "re-download the weights")
    return header


def _from_gguf(path: Path) -> ParameterCount:
    from llmbench.models._gguf import read_gguf_header

    header = read_gguf_header(path)
    total = sum(t.n_elements for t in header.tensors)
    embedding = sum(t.n_elements for t in header.tensors if _EMBEDDING_NAMES.search(t.name))
    return ParameterCount(total, embedding, "GGUF header")


def _adapter_count(spec: ModelSpec) -> ParameterCount:
    if spec.base is None or spec.adapter is None:
        base_name = spec.adapter.base_model if spec.adapter else None
        raise LLMBenchError(
            f"the base model of adapter {spec.name} ({base_name}) is not available locally",
            "put the base model folder beside the adapter or in the Hugging Face cache",
        )
    base_count = count_parameters(spec.base)
    model = meta_model(spec.base.path) if spec.base.source == "hf" else None
    trainable = lora_parameters(model, spec.raw_config) if model is not None else None
    return ParameterCount(base_count.total, base_count.embedding, base_count.method, trainable)


def lora_parameters(model: Any, adapter_config: dict[str, Any]) -> int:
    """Trainable parameters a LoRA ``adapter_config`` adds to ``model`` (built on any device)."""
    import torch

    rank = int(adapter_config.get("r", 8))
    rank_pattern: dict[str, int] = adapter_config.get("rank_pattern") or {}
    targets = adapter_config.get("target_modules") or []
    to_save = adapter_config.get("modules_to_save") or []
    bias = adapter_config.get("bias", "none")
    linear_types: tuple[type, ...] = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D

        linear_types += (Conv1D,)
    except ImportError:
        pass
    total = 0
    for name, module in model.named_modules():
        is_linear = isinstance(module, linear_types)  # kept in a variable: module stays Any for mypy
        if not name or not is_linear:
            continue
        if not _targeted(name, targets, model):
            continue
        if isinstance(module, torch.nn.Linear):
            fan_in, fan_out = module.in_features, module.out_features
        else:  # GPT-2's Conv1D stores weight as (in, out)
            fan_in, fan_out = module.weight.shape
        r = next((int(v) for k, v in rank_pattern.items() if re.match(rf"(.*\.)?{k}$", name)), rank)
        total += r * (fan_in + fan_out)
        if bias == "lora_only" and module.bias is not None:
            total += module.bias.numel()
    if bias == "all":
        total += sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    for name, module in model.named_modules():
        if name and any(name == t or name.endswith("." + t) for t in to_save):
            total += sum(p.numel() for p in module.parameters())
    return int(total)


def _targeted(name: str, targets: Any, model: Any) -> bool:
    if isinstance(targets, str):
        if targets == "all-linear":
            output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
            return output is None or model.get_submodule(name) is not output
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)
