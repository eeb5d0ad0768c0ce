"""What a model is, read from its files without loading weights.

:func:`read_spec` turns a resolved model (HF folder, GGUF file, PEFT adapter folder) into a
:class:`ModelSpec` with the same field names whatever the source, so models compare side by side.
HF configs are read through transformers' ``AutoConfig`` when it knows the architecture (its
``attribute_map`` turns GPT-2's ``n_embd`` into ``hidden_size`` and so on) and through a table of
aliases otherwise; GGUF metadata through ``llmbench.models._gguf``. Fields the spec does not
name are kept in ``extra``, never dropped.

The sizes (hidden size, layers, heads, vocabulary ...) are checked: each must be a positive whole
number (a per-layer list counts as its largest entry), so a config with ``"hidden_size": "abc"``
or a bit-flipped GGUF is an :class:`~llmbench.errors.InvalidModelError` naming the key, not a
TypeError three modules later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidModelError
from llmbench.models._resolve import ModelRef, read_json_object

MAX_SIZE = 1 << 40
"""Largest size a config may state (hidden size, vocabulary, context ...)."""
MAX_LAYERS = 1024
"""Most layers a config may state (the largest models have about 130): building more on the meta
device to count parameters would take minutes."""
_SIZE_FIELDS = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                "vocab_size", "max_context")  # fmt: skip

# Normalised field -> keys that hold it in configs of various families (first present wins).
_ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim", "model_dim"),
    "intermediate_size": (
        "intermediate_size",
        "n_inner",
        "d_ff",
        "ffn_dim",
        "ffn_hidden_size",
        "hidden_dim",
        "encoder_ffn_dim",
    ),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "num_decoder_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_kv_heads": ("num_key_value_heads", "n_kv_heads", "num_kv_heads", "multi_query_group_num"),
    "head_dim": ("head_dim", "d_kv", "kv_channels"),
    "vocab_size": ("vocab_size", "n_vocab", "padded_vocab_size"),
    "max_context": ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"),
    "activation": ("hidden_act", "activation_function", "hidden_activation", "dense_act_fn", "feed_forward_proj"),
}
_KNOWN_KEYS = {key for keys in _ALIASES.values() for key in keys} | {
    "num_decoder_layers", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
    "is_encoder_decoder",
} | {
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
class Seq2SeqSpec:
    """The two stacks of an encoder-decoder model (T5, Flan-T5, BART), as the memory plan needs them.

    T5 names them ``num_layers`` / ``num_decoder_layers`` (absent: as many as the encoder),
    ``num_heads`` and ``d_kv`` (a head's width, not always ``d_model / num_heads``); BART, mBART,
    Marian and Pegasus ``encoder_layers`` / ``decoder_layers``, ``encoder_attention_heads`` /
    ``decoder_attention_heads`` and ``d_model`` (a head: ``d_model / heads``).
    """

    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    decoder_head_dim: int
    """The width of a decoder head: its self-attention and cross-attention K and V are this wide."""


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
    family: str = "causal"
    """:func:`llmbench.models.model_family`: ``causal``, ``seq2seq``, ``embedding`` or ``vision``."""
    seq2seq: Seq2SeqSpec | None = None
    """Both stacks of an encoder-decoder model (``num_layers`` and ``num_heads`` are its encoder's)."""
    raw_config: dict[str, Any] = field(default_factory=dict, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gqa_ratio(self) -> float | None:
        if self.num_heads and self.num_kv_heads:
            return self.num_heads / self.num_kv_heads
        return None

    @property
    def encoder_layers(self) -> int | None:
        return self.seq2seq.encoder_layers if self.seq2seq is not None else None

    @property
    def decoder_layers(self) -> int | None:
        return self.seq2seq.decoder_layers if self.seq2seq is not None else None

    @property
    def decoder_heads(self) -> int | None:
        return self.seq2seq.decoder_heads if self.seq2seq is not None else None

    @property
    def quantization_scheme(self) -> str | None:
        """The stored quantization in words: ``GPTQ 4-bit, group size 128``, a GGUF type, ``bitsandbytes
        4-bit``; None for an unquantized model."""
        return quantization_scheme(self.quantization)


def read_spec(model: ModelRef) -> ModelSpec:
    if model.format == "gguf":
        return _gguf_spec(model)
    if model.format == "adapter":
        return _adapter_spec(model)
    return _hf_spec(model)


def load_config_json(folder: Path) -> dict[str, Any]:
    return read_json_object(folder / "config.json", "repair or re-download config.json")


def transformers_config(folder: Path) -> Any | None:
    """transformers' config object for ``folder``, or None when it does not know the architecture.

    A config of an architecture transformers knows that it refuses (a size of the wrong type,
    sizes that do not fit together) is an :class:`InvalidModelError` with transformers' reason.
    """
    try:
        from transformers import AutoConfig
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    except ImportError:
        return None
    model_type = load_config_json(folder).get("model_type")
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as exc:  # transformers validates configs with many exception types; all mean "refused"
        if isinstance(model_type, str) and model_type in CONFIG_MAPPING:
            raise InvalidModelError(
                f"{folder / 'config.json'} is not a valid {model_type} config ({_reason(exc)})",
                "repair or re-download config.json",
            ) from None
        return None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Warnings about a config or a model built only to be measured (token ids outside a tiny
    vocabulary, a zero-element tensor on the meta device ...) kept off stderr: the error, if
    any, is the one line the user sees."""
    import logging as stdlib_logging
    import warnings

    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity(stdlib_logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(level)


def _reason(exc: BaseException) -> str:
    """An exception as one short line (library messages can run to pages)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _first(source: Any, keys: tuple[str, ...]) -> tuple[str, Any]:
    """The first of ``keys`` that ``source`` (a dict or a config object) sets, and its value."""
    for key in keys:
        value = source.get(key) if isinstance(source, dict) else getattr(source, key, None)
        if value is not None:
            return key, value
    return keys[0], None


def _size(value: Any, key: str, where: Path | str, fix: str, limit: int = MAX_SIZE) -> int | None:
    """A size field as an int; None when not stated (0, a long GGUF array kept as its length)."""
    if isinstance(value, (list, tuple)) and value:  # per-layer values (OpenELM): the largest
        sizes = [_size(item, key, where, fix, limit) for item in value]
        return max((size for size in sizes if size is not None), default=None)
    if isinstance(value, dict) and set(value) == {"type", "length"}:
        return None  # a GGUF array too long to keep
    size = int(value) if isinstance(value, float) and value.is_integer() else value
    if size is None or (type(size) is int and size == 0):
        return None
    if type(size) is not int or not 0 < size <= limit:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InvalidModelError(f"{where}: {key} is {shown}, not a whole number from 1 to {limit:,}", fix)
    return size


def _sizes(source: Any, where: Path | str, fix: str) -> dict[str, Any]:
    """The normalised size fields of an HF config (or its text config), checked."""
    fields: dict[str, Any] = {}
    for name, keys in _ALIASES.items():
        key, value = _first(source, keys)
        if name in _SIZE_FIELDS:
            value = _size(value, key, where, fix, MAX_LAYERS if name == "num_layers" else MAX_SIZE)
        else:
            value = _text(value)
        fields[name] = value
    return fields


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
    fields = _derive(_sizes(lm, model.folder / "config.json", "repair or re-download config.json"))
    if fields["intermediate_size"] is None and fields["hidden_size"] and raw.get("model_type") == "gpt2":
        fields["intermediate_size"] = 4 * fields["hidden_size"]  # GPT-2's n_inner=None means 4 x n_embd
    architectures = raw.get("architectures")
    if isinstance(architectures, list):
        architectures = architectures[0] if architectures else None
    tied = raw.get("tie_word_embeddings")
    if tied is None and config is not None:
        tied = getattr(config, "tie_word_embeddings", None)
    dtype = raw.get("torch_dtype") or raw.get("dtype")
    return ModelSpec(
        name=model.name,
        source="hf",
        path=model.path,
        architecture=_text(architectures),
        model_type=_text(raw.get("model_type")),
        rope_scaling=raw.get("rope_scaling") or raw.get("rope_parameters"),
        tied_embeddings=tied if isinstance(tied, bool) else None,
        dtype=_text(dtype),
        quantization=raw.get("quantization_config"),
        license=_text(raw.get("license")),
        transformers_version=_text(raw.get("transformers_version")),
        raw_config=raw,
        extra={k: v for k, v in raw.items() if k not in _KNOWN_KEYS},
        **fields,
        **_family_fields(model, raw),
    )


def _family_fields(model: ModelRef, raw: dict[str, Any]) -> dict[str, Any]:
    """``family`` and, for an encoder-decoder model, ``seq2seq`` (its stacks, checked like every size)."""
    from llmbench.models._family import model_family

    family = model_family(model)
    if family != "seq2seq":
        return {"family": family}
    where, fix = model.folder / "config.json", "repair or re-download config.json"

    def size(*keys: str, default: int | None = None) -> int | None:
        key, value = _first(raw, keys)
        found = _size(value, key, where, fix, MAX_LAYERS if "layers" in key else MAX_SIZE)
        return found if found is not None else default

    if "encoder_layers" in raw or "decoder_layers" in raw:  # BART, mBART, Marian, Pegasus
        decoder_heads = size("decoder_attention_heads", "num_attention_heads")
        hidden = size("d_model", "hidden_size")
        stacks = (
            size("encoder_layers"),
            size("decoder_layers"),
            size("encoder_attention_heads", "num_attention_heads"),
            decoder_heads,
            hidden // decoder_heads if hidden and decoder_heads else None,
        )
    else:  # T5, Flan-T5, mT5, UMT5
        encoder_layers = size("num_layers", "num_hidden_layers")
        heads = size("num_heads", "num_attention_heads")
        hidden = size("d_model", "hidden_size")
        head_dim = size("d_kv", default=hidden // heads if hidden and heads else None)
        stacks = (encoder_layers, size("num_decoder_layers", default=encoder_layers), heads, heads, head_dim)
    if any(value is None for value in stacks):
        return {"family": family}
    return {"family": family, "seq2seq": Seq2SeqSpec(*(int(value or 0) for value in stacks))}


def _text(value: Any) -> str | None:
    """A field that should be text: kept if it is, shown in short if it is a number, else dropped."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _gguf_spec(model: ModelRef) -> ModelSpec:
    from llmbench.models._gguf import read_gguf_header

    header = read_gguf_header(model.path)
    meta = header.metadata
    arch = header.architecture or "unknown"
    fix = "re-download or re-convert the model"
    fields: dict[str, Any] = {}
    for suffix, name in _GGUF_FIELDS.items():
        limit = MAX_LAYERS if name == "num_layers" else MAX_SIZE
        fields[name] = _size(meta.get(f"{arch}.{suffix}"), f"{arch}.{suffix}", model.path, fix, limit)
    if fields["vocab_size"] is None:
        tokens = meta.get("tokenizer.ggml.tokens")
        if isinstance(tokens, dict):
            fields["vocab_size"] = _size(tokens.get("length"), "tokenizer.ggml.tokens", model.path, fix)
        elif isinstance(tokens, list):
            fields["vocab_size"] = len(tokens) or None
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
        license=_text(meta.get("general.license")),
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
    except (ValueError, TypeError, OverflowError):  # a code this gguf does not know, or a corrupt value
        text = str(code)
        return text if len(text) <= 40 else text[:37] + "..."


def _adapter_spec(model: ModelRef) -> ModelSpec:
    path = model.folder / "adapter_config.json"
    raw = read_json_object(path, "repair the adapter's adapter_config.json")
    _check_adapter(raw, path)
    base_name = raw.get("base_model_name_or_path")
    base_ref = _resolve_base(base_name if isinstance(base_name, str) else None, model.folder)
    base = read_spec(base_ref) if base_ref is not None else None
    targets = raw.get("target_modules") or ()
    adapter = AdapterSpec(
        peft_type=str(raw.get("peft_type", "unknown")),
        rank=raw.get("r"),
        alpha=raw.get("lora_alpha"),
        dropout=raw.get("lora_dropout"),
        target_modules=tuple(sorted(targets)) if isinstance(targets, list) else (str(targets),),
        base_model=base_name if isinstance(base_name, str) else None,
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


def _check_adapter(raw: dict[str, Any], path: Path) -> None:
    """The LoRA fields the parameter count reads, checked (a wrong type names its key)."""
    import re

    def refuse(key: str, expected: str) -> InvalidModelError:
        shown = repr(raw[key]) if len(repr(raw[key])) <= 40 else repr(raw[key])[:37] + "..."
        return InvalidModelError(
            f"{path}: {key} is {shown}, not {expected}", "repair the adapter's adapter_config.json"
        )

    for key in ("r", "lora_alpha", "lora_dropout"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise refuse(key, "a number of at least 0")
    if raw.get("r") is not None and not (type(raw["r"]) is int and 0 < raw["r"] <= MAX_SIZE):
        raise refuse("r", "a positive whole number")
    for key in ("target_modules", "modules_to_save"):
        value = raw.get(key)
        if (
            value is not None
            and not isinstance(value, str)
            and not (isinstance(value, list) and all(isinstance(item, str) for item in value))
        ):
            raise refuse(key, "a list of module names")
    pattern = raw.get("rank_pattern")
    if pattern is not None and not (
        isinstance(pattern, dict) and all(type(rank) is int and 0 < rank <= MAX_SIZE for rank in pattern.values())
    ):
        raise refuse("rank_pattern", "a mapping of module names to ranks")
    for key, regex in [("target_modules", raw.get("target_modules")), *(("rank_pattern", k) for k in pattern or {})]:
        if isinstance(regex, str):
            try:
                re.compile(regex)
            except re.error:
                raise refuse(key, "a valid module name or regular expression") from None
    for key in ("peft_type", "bias", "base_model_name_or_path"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise refuse(key, "text")


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


def adapter_base(adapter: ModelRef, base: str | None = None) -> ModelRef:
    """The model an adapter folder applies to: ``base`` when given (``--base``), else the local
    model its ``adapter_config.json`` names; not found locally is an error that says how to pass it."""
    from llmbench.models._resolve import resolve_model

    if base is not None:
        return resolve_model(base)
    path = adapter.folder / "adapter_config.json"
    raw = read_json_object(path, "repair the adapter's adapter_config.json")
    _check_adapter(raw, path)
    name = raw.get("base_model_name_or_path")
    found = _resolve_base(name if isinstance(name, str) else None, adapter.folder)
    if found is None:
        named = f"its base model {name!r} is not available locally" if name else "it names no base model"
        raise InvalidModelError(
            f"cannot run adapter {adapter.name}: {named}", "pass the base model with --base PATH (or -o base=PATH)"
        )
    if found.format not in ("hf", "gguf"):
        raise InvalidModelError(
            f"the base of adapter {adapter.name} is {found.location}, which is not a model folder or a GGUF file",
            "pass the base model with --base PATH",
        )
    return found


def quantization_scheme(config: Any) -> str | None:
    """A ``quantization_config`` (or a GGUF's file type) in words, for ``inspect``."""
    if not isinstance(config, dict):
        return None
    if "gguf_file_type" in config:
        return _text(config["gguf_file_type"])
    method = str(config.get("quant_method") or "").lower()
    if not method:
        return None
    if method == "bitsandbytes":
        bits = 4 if config.get("load_in_4bit") else 8 if config.get("load_in_8bit") else None
        kind = f" ({config.get('bnb_4bit_quant_type')})" if bits == 4 and config.get("bnb_4bit_quant_type") else ""
        return f"bitsandbytes {bits}-bit{kind}" if bits else "bitsandbytes"
    parts = [method.upper()]
    bits = config.get("bits", config.get("w_bit"))
    if isinstance(bits, int) and not isinstance(bits, bool):
        parts.append(f"{bits}-bit")
    group = config.get("group_size", config.get("q_group_size"))
    text = " ".join(parts)
    if isinstance(group, int) and not isinstance(group, bool):
        text += ", per channel" if group == -1 else f", group size {group}"
    return text
