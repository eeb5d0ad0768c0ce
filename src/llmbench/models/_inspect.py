"""Side-by-side rows for ``llmbench inspect``: spec fields plus parameter counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.models._params import ParameterCount, count_parameters
from llmbench.models._resolve import ModelRef, resolve_model
from llmbench.models._spec import ModelSpec, read_spec

FIELDS: tuple[tuple[str, str], ...] = (
    ("source", "format"),
    ("family", "family"),
    ("architecture", "architecture"),
    ("model_type", "model type"),
    ("hidden_size", "hidden size"),
    ("intermediate_size", "intermediate size"),
    ("num_layers", "layers"),
    ("num_heads", "attention heads"),
    ("num_kv_heads", "KV heads"),
    ("gqa_ratio", "GQA ratio (heads / KV heads)"),
    ("head_dim", "head dim"),
    ("encoder_layers", "encoder layers (seq2seq)"),
    ("decoder_layers", "decoder layers (seq2seq)"),
    ("decoder_heads", "decoder attention heads (seq2seq)"),
    ("vocab_size", "vocabulary"),
    ("max_context", "max context"),
    ("rope_scaling", "RoPE scaling"),
    ("tied_embeddings", "tied embeddings"),
    ("dtype", "dtype"),
    ("activation", "activation"),
    ("quantization", "quantization"),
    ("quantization_scheme", "quantization scheme"),
    ("license", "licence"),
    ("transformers_version", "transformers version"),
)


@dataclass(frozen=True)
class Inspection:
    model: ModelRef
    spec: ModelSpec
    parameters: ParameterCount | None
    parameter_error: str | None

    def as_dict(self) -> dict[str, Any]:
        spec = self.spec
        data: dict[str, Any] = {"name": spec.name, "path": str(spec.path), "size_bytes": self.model.size_bytes}
        for key, _label in FIELDS:
            data[key] = getattr(spec, key)
        if spec.adapter is not None:
            adapter = spec.adapter
            data["adapter"] = {
                "peft_type": adapter.peft_type,
                "rank": adapter.rank,
                "alpha": adapter.alpha,
                "dropout": adapter.dropout,
                "target_modules": list(adapter.target_modules),
                "base_model": adapter.base_model,
                "base_resolved": str(adapter.base_resolved) if adapter.base_resolved else None,
            }
        if self.parameters is not None:
            p = self.parameters
            data["parameters"] = {
                "total": p.total,
                "embedding": p.embedding,
                "non_embedding": p.non_embedding,
                "trainable_adapter": p.trainable_adapter,
                "method": p.method,
            }
        else:
            data["parameters"] = {"error": self.parameter_error}
        data["extra"] = spec.extra
        return data


def inspect_model(model: str | None) -> Inspection:
    ref = resolve_model(model)
    spec = read_spec(ref)
    try:
        parameters: ParameterCount | None = count_parameters(spec)
        error = None
    except LLMBenchError as exc:
        if spec.source != "adapter":
            raise
        parameters, error = None, str(exc)
    return Inspection(ref, spec, parameters, error)


def cell(value: Any) -> str:
    """A compact one-cell rendering of any spec value."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str, sort_keys=True)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)
