"""What a model is, read from its files without loading weights.

:func:`read_spec` turns a resolved model (HF folder, GGUF file, PEFT adapter folder) into a
:class:`ModelSpec` with the same field names whatever the source, so models compare side by side.
HF configs are read through transformers' ``AutoConfig`` when it knows the architecture (its
``attribute_map`` turns GPT-2's ``n_embd`` into ``hidden_size`` and so on) and through a table of
aliases otherwise; GGUF metadata through ``llmbench.models._gguf``. Fields the spec does not
name are kept in ``extra``, never dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidModelError
from llmbench.models._resolve import ModelRef

# Normalised field -> keys that hold it in configs of various families (first present wins).
_ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim", "model_dim"),
    "intermediate_size": ("intermediate_size", "n_inner", "d_ff", "ffn_dim", "ffn_hidden_size", "hidden_dim"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "num_decoder_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_kv_heads": ("num_key_value_heads", "n_kv_heads", "num_kv_heads", "multi_query_group_num"),
    "head_dim": ("head_dim", "d_kv", "kv_channels"),
    "vocab_size": ("vocab_size", "n_vocab", "padded_vocab_size"),
    "max_context": ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"),
    "activation": ("hidden_act", "activation_function", "hidden_activation", "dense_act_fn", "feed_forward_proj"),
}
_KNOWN_KEYS = {key for keys in _ALIASES.values() for key in keys} | {
    "architectures", "model_type", "rope_scaling", "rope_parameters", "tie_word_embeddings", "torch_dtype", "dtype",
    "quantization_config", "transformers_version", "license", "rope_theta",
}  # fmt: skip

# GGUF metadata suffixes (after "<arch>.") -> normalised field.
_GGUF_FIELDS = {
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "block_count": "num_layers",
    "attention.head_count": "num_heads",
    "attention.head_count_kv": "num_kv_heads",
    "attention.key_length": "head_dim",
    "context_length": "max_context",
    "vocab_size": "vocab_size",
}


@dataclass(frozen=True)
class AdapterSpec:
    peft_type: str
    rank: int | None
    alpha: float | None
    dropout: float | None
    target_modules: tuple[str, ...]
    base_model: str | None
    base_resolved: Path | None
    """The base model's local folder, when it is available offline."""


@dataclass(frozen=True)
class ModelSpec:
    """One model's architecture in normalised fields; ``None`` where the source does not say."""

    name: str
    source: str
    """``hf``, ``gguf`` or ``adapter``."""
    path: Path
    architecture: str | None = None
    model_type: str | None = None
    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    max_context: int | None = None
    rope_scaling: Any = None
    tied_embeddings: bool | None = None
    dtype: str | None = None
    activation: str | None = None
    quantization: Any = None
    license: str | None = None
    transformers_version: str | None = None
    adapter: AdapterSpec | None = None
    base: ModelSpec | None = None
    """For an adapter: the spec of its base model when that is available locally."""
    raw_config: dict[str, Any] = field(default_factory=dict, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gqa_ratio(self) -> float | None:
        if self.num_heads and self.num_kv_heads:
            return self.num_heads / self.num_kv_heads
        return None


def read_spec(model: ModelRef) -> ModelSpec:
    if model.format == "gguf":
        return _gguf_spec(model)
    if model.format == "adapter":
        return _adapter_spec(model)
    return _hf_spec(model)


def load_config_json(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidModelError(f"{path} is not valid JSON ({exc})", "repair or re-download config.json") from None
    if not isinstance(data, dict):
        raise InvalidModelError(f"{path} does not hold a JSON object", "repair or re-download config.json")
    return data


def transformers_config(folder: Path) -> Any | None:
    """transformers' config object for ``folder``, or None when it does not know the architecture."""
    try:
        from transformers import AutoConfig
    except ImportError:
        return None
    try:
        return AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except (ValueError, KeyError, OSError, TypeError):
        return None


def _first(source: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = source.get(key) if isinstance(source, dict) else getattr(source, key, None)
        if value is not None:
            return value
    return None


def _derive(fields: dict[str, Any]) -> dict[str, Any]:
    """Fill what configs leave implicit: KV heads default to heads (no GQA), head dim to hidden / heads."""
    if fields["num_kv_heads"] is None:
        fields["num_kv_heads"] = fields["num_heads"]
    if fields["head_dim"] is None and fields["hidden_size"] and fields["num_heads"]:
        fields["head_dim"] = fields["hidden_size"] // fields["num_heads"]
    return fields


def _hf_spec(model: ModelRef) -> ModelSpec:
    raw = load_config_json(model.folder)
    config = transformers_config(model.folder)
    text = getattr(config, "text_config", None) if config is not None else raw.get("text_config")
    lm: Any = text if text is not None else (config if config is not None else raw)
    fields: dict[str, Any] = _derive({name: _first(lm, keys) for name, keys in _ALIASES.items()})
    if fields["intermediate_size"] is None and fields["hidden_size"] and raw.get("model_type") == "gpt2":
        fields["intermediate_size"] = 4 * fields["hidden_size"]  # GPT-2's n_inner=None means 4 x n_embd
    architectures = raw.get("architectures") or []
    tied = raw.get("tie_word_embeddings")
    if tied is None and config is not None:
        tied = getattr(config, "tie_word_embeddings", None)
    dtype = raw.get("torch_dtype") or raw.get("dtype")
    return ModelSpec(
        name=model.name,
        source="hf",
        path=model.path,
        architecture=architectures[0] if architectures else None,
        model_type=raw.get("model_type"),
        rope_scaling=raw.get("rope_scaling") or raw.get("rope_parameters"),
        tied_embeddings=tied,
        dtype=str(dtype) if dtype else None,
        quantization=raw.get("quantization_config"),
        license=raw.get("license"),
        transformers_version=raw.get("transformers_version"),
        raw_config=raw,
        extra={k: v for k, v in raw.items() if k not in _KNOWN_KEYS},
        **fields,
    )


def _gguf_spec(model: ModelRef) -> ModelSpec:
    from llmbench.models._gguf import read_gguf_header

    header = read_gguf_header(model.path)
    meta = header.metadata
    arch = header.architecture or "unknown"
    fields: dict[str, Any] = {name: meta.get(f"{arch}.{suffix}") for suffix, name in _GGUF_FIELDS.items()}
    if fields["vocab_size"] is None:
        tokens = meta.get("tokenizer.ggml.tokens")
        fields["vocab_size"] = tokens.get("length") if isinstance(tokens, dict) else len(tokens or [])
    _derive(fields)
    names = {t.name for t in header.tensors}
    rope = {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith(f"{arch}.rope.scaling")}
    used = {f"{arch}.{suffix}" for suffix in _GGUF_FIELDS} | {"general.architecture", "general.license"}
    extra = {
        k: v
        for k, v in meta.items()
        if k not in used and not k.startswith("tokenizer.ggml.") and k != "tokenizer.chat_template"
    }
    extra["tensor_types"] = _tensor_type_counts(header.tensors)
    return ModelSpec(
        name=model.name,
        source="gguf",
        path=model.path,
        architecture=arch,
        model_type=arch,
        rope_scaling=rope or None,
        tied_embeddings="output.weight" not in names if "token_embd.weight" in names else None,
        dtype=_gguf_file_type(meta.get("general.file_type")),
        quantization={"gguf_file_type": _gguf_file_type(meta.get("general.file_type"))},
        license=meta.get("general.license"),
        extra=extra,
        **fields,
    )


def _tensor_type_counts(tensors: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tensor in tensors:
        counts[tensor.ggml_type] = counts.get(tensor.ggml_type, 0) + 1
    return counts


def _gguf_file_type(code: Any) -> str | None:
    if code is None:
        return None
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(code)).name.removeprefix("MOSTLY_")
    except ValueError:
        return str(code)


def _adapter_spec(model: ModelRef) -> ModelSpec:
    path = model.folder / "adapter_config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidModelError(
            f"{path} is not valid JSON ({exc})", "repair the adapter's adapter_config.json"
        ) from None
    base_name = raw.get("base_model_name_or_path")
    base_ref = _resolve_base(base_name, model.folder)
    base = read_spec(base_ref) if base_ref is not None else None
    targets = raw.get("target_modules") or ()
    adapter = AdapterSpec(
        peft_type=str(raw.get("peft_type", "unknown")),
        rank=raw.get("r"),
        alpha=raw.get("lora_alpha"),
        dropout=raw.get("lora_dropout"),
        target_modules=tuple(sorted(targets)) if isinstance(targets, (list, tuple, set)) else (str(targets),),
        base_model=base_name,
        base_resolved=base_ref.path if base_ref is not None else None,
    )
    known = {"peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "base_model_name_or_path"}
    inherited: dict[str, Any] = {}
    if base is not None:
        for name in ("architecture", "model_type", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "head_dim", "vocab_size", "max_context", "rope_scaling", "tied_embeddings",
                     "dtype", "activation", "license", "transformers_version"):  # fmt: skip
            inherited[name] = getattr(base, name)
    return ModelSpec(
        name=model.name,
        source="adapter",
        path=model.path,
        adapter=adapter,
        base=base,
        raw_config=raw,
        extra={k: v for k, v in raw.items() if k not in known},
        **inherited,
    )


def _resolve_base(name: str | None, adapter_folder: Path) -> ModelRef | None:
    """The adapter's base model, if it can be found offline (a path, relative path or cached id)."""
    if not name:
        return None
    from llmbench.errors import LLMBenchError
    from llmbench.models._resolve import resolve_model

    for candidate in (name, str(adapter_folder / name), str(adapter_folder.parent / name)):
        try:
            return resolve_model(candidate)
        except LLMBenchError:
            continue
    return None
