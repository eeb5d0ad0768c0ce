"""Sentence embeddings the sentence-transformers way, on the model the transformers backend loaded.

A sentence-transformers folder says how its token vectors become one vector per text:
``modules.json`` lists the modules in order (``Transformer``, ``Pooling``, ``Normalize``), the
``Pooling`` module's ``config.json`` names the pooling (``pooling_mode_cls_token``,
``pooling_mode_mean_tokens``, ``pooling_mode_max_tokens``, ``pooling_mode_mean_sqrt_len_tokens``,
``pooling_mode_weightedmean_tokens``, ``pooling_mode_lasttoken``, or the newer ``pooling_mode``),
several modes concatenated in that order; a ``Normalize`` module L2-normalises; and
``sentence_bert_config.json`` holds ``max_seq_length`` and ``do_lower_case``. A folder without
them pools by the mean of the token vectors, as sentence-transformers does for a plain model.
A module llmbench does not implement (``Dense``, ``LayerNorm`` ...) is refused: the vectors would
differ from the library's, silently.

The texts go through the same steps as ``SentenceTransformer.encode``: sorted longest first (by
characters) so each batch pads little, ``batch_size`` at a time, the tokenizer called with
``padding=True, truncation="longest_first"`` at ``max_seq_length`` (else the smaller of the
tokenizer's ``model_max_length`` and the model's ``max_position_embeddings``), the forward pass
under ``torch.inference_mode``, and the vectors returned in the input order as float32. So the
same texts give the same vectors (tested against sentence-transformers on all-MiniLM-L6-v2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidModelError, InvalidOptionError

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
"""Every pooling sentence-transformers has, in the order it concatenates them."""
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class EmbeddingSpec:
    """How a folder's token vectors become one vector per text (read without loading anything)."""

    pooling: tuple[str, ...] = ("mean",)
    """Pooling modes, concatenated in :data:`POOLING_MODES` order."""
    normalize: bool = False
    """L2-normalise each vector (a ``Normalize`` module)."""
    max_seq_length: int | None = None
    """Tokens per text the model sees at most (``sentence_bert_config.json``); None: the model's limit."""
    do_lower_case: bool = False

    def describe(self) -> str:
        """``mean, normalized``."""
        return "+".join(self.pooling) + (", normalized" if self.normalize else "")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModelError(f"cannot read {path.name} in {path.parent} ({exc})", "check the model folder") from None


def _pooling_modes(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The modes a ``Pooling`` config turns on (its ``pooling_mode`` or the older booleans)."""
    named = config.get("pooling_mode")
    if named is not None:
        wanted = {str(named)} if isinstance(named, str) else {str(mode) for mode in named}
    else:
        wanted = {mode for key, mode in _LEGACY_KEYS.items() if config.get(key)}
    unknown = sorted(wanted - set(POOLING_MODES))
    if unknown:
        raise InvalidModelError(
            f"unknown pooling mode {', '.join(unknown)} in the model's Pooling config",
            f"the modes sentence-transformers defines are: {', '.join(POOLING_MODES)}",
        )
    return tuple(mode for mode in POOLING_MODES if mode in wanted) or ("mean",)


def read_embedding_spec(folder: Path) -> EmbeddingSpec:
    """The pooling, normalisation and length limit of the model in ``folder`` (mean pooling without a
    ``modules.json``, as sentence-transformers builds a plain model)."""
    modules_file = folder / "modules.json"
    pooling: tuple[str, ...] = ("mean",)
    normalize = False
    base = folder
    if modules_file.is_file():
        modules = _read_json(modules_file)
        if not isinstance(modules, list):
            raise InvalidModelError(f"{modules_file} is not a list of modules", "check the model folder")
        for module in sorted((m for m in modules if isinstance(m, Mapping)), key=lambda m: int(m.get("idx", 0))):
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            path = folder / str(module.get("path") or "")
            if kind not in _SUPPORTED_MODULES:
                raise InvalidModelError(
                    f"the model's sentence-transformers module {kind or '?'} is not supported",
                    f"llmbench embeds with {', '.join(_SUPPORTED_MODULES)} modules only",
                )
            if kind == "Transformer":
                base = path
            elif kind == "Pooling":
                config_file = path / "config.json"
                pooling = _pooling_modes(_read_json(config_file)) if config_file.is_file() else ("mean",)
            else:
                normalize = True
    settings_file = base / "sentence_bert_config.json"
    settings = _read_json(settings_file) if settings_file.is_file() else {}
    length = settings.get("max_seq_length") if isinstance(settings, Mapping) else None
    lower = bool(settings.get("do_lower_case")) if isinstance(settings, Mapping) else False
    max_seq_length = int(length) if isinstance(length, int) and not isinstance(length, bool) and length > 0 else None
    return EmbeddingSpec(pooling, normalize, max_seq_length, lower)


class Embedder:
    """Texts to vectors with a loaded encoder: tokenize, forward, pool, normalise."""

    def __init__(self, torch: Any, model: Any, tokenizer: Any, spec: EmbeddingSpec, device: Any) -> None:
        import inspect

        self.torch, self.model, self.tokenizer, self.spec, self.device = torch, model, tokenizer, spec, device
        self.max_length = token_limit(spec, model, tokenizer)
        try:
            params = inspect.signature(model.forward).parameters
            self.inputs: frozenset[str] | None = frozenset(params)
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                self.inputs = None
        except (TypeError, ValueError):
            self.inputs = None

    def tokens(self, texts: Sequence[str]) -> Any:
        """The tokenizer's batch, as sentence-transformers makes it (padded, truncated at the limit)."""
        if self.spec.do_lower_case:
            texts = [text.lower() for text in texts]
        return self.tokenizer(
            list(texts), padding=True, truncation="longest_first", max_length=self.max_length, return_tensors="pt"
        )

    def __call__(self, texts: str | Sequence[str], batch_size: int = 32) -> Any:
        """One float32 vector per text (a numpy array, rows in the order of ``texts``); a single
        ``str`` gives one 1-D vector, as ``SentenceTransformer.encode(str)`` does."""
        import numpy as np

        if isinstance(texts, str):
            return self([texts], batch_size)[0]
        if batch_size < 1:
            raise InvalidOptionError(
                f"batch size must be at least 1, got {batch_size}", "use a batch size of 1 or more"
            )
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts])
        ordered = [texts[int(index)] for index in order]
        parts = []
        with self.torch.inference_mode():
            for start in range(0, len(ordered), batch_size):
                parts.append(self.batch(ordered[start : start + batch_size]))
        vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
        result = np.empty_like(vectors)
        result[order] = vectors
        return result

    def batch(self, texts: Sequence[str]) -> Any:
        """Vectors of one batch, on the host (call under ``inference_mode``)."""
        features = self.tokens(texts)
        inputs = {
            key: value.to(self.device) for key, value in features.items() if self.inputs is None or key in self.inputs
        }
        output = self.model(**inputs)
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        return sentence_vectors(self.torch, hidden, inputs["attention_mask"], self.spec)

    @property
    def dimension(self) -> int:
        config = getattr(self.model, "config", None)
        size = getattr(config, "hidden_size", None) or 0
        return int(size) * len(self.spec.pooling)


def token_limit(spec: EmbeddingSpec, model: Any, tokenizer: Any) -> int:
    """Tokens per text the loaded model sees: ``max_seq_length``, else the model's limit."""
    return spec.max_seq_length or _model_limit(model, tokenizer)


def sentence_vectors(torch: Any, hidden: Any, mask: Any, spec: EmbeddingSpec) -> Any:
    """Float32 numpy vectors, one per sequence, from token vectors ``hidden`` (batch, tokens, d) and
    the attention ``mask`` (batch, tokens; 0 on padding): the spec's pooling over the real tokens only,
    then its normalisation."""
    vectors = pool(torch, hidden, mask, spec.pooling)
    if spec.normalize:
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
    return vectors.float().cpu().numpy()


def _model_limit(model: Any, tokenizer: Any) -> int:
    """The smaller of the tokenizer's ``model_max_length`` and the model's position limit."""
    limits = [int(tokenizer.model_max_length)] if getattr(tokenizer, "model_max_length", None) else []
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else 512


def pool(torch: Any, hidden: Any, mask: Any, modes: Sequence[str]) -> Any:
    """One vector per sequence from its token vectors, each mode as sentence-transformers computes it."""
    vectors = []
    accumulate = torch.float32 if hidden.dtype in (torch.float16, torch.bfloat16) else hidden.dtype
    for mode in modes:
        if mode == "cls":
            first = mask.to(torch.int).argmax(dim=1)
            vectors.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), first])
        elif mode == "max":
            keep = mask.unsqueeze(-1).expand_as(hidden).to(hidden.dtype)
            vectors.append(hidden.masked_fill(keep == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            total = (hidden * weights).sum(dim=1, dtype=accumulate)
            count = torch.clamp(weights.sum(dim=1, dtype=accumulate), min=1e-9)
            vectors.append((total / (count if mode == "mean" else torch.sqrt(count))).to(hidden.dtype))
        elif mode == "weightedmean":
            weights = mask.unsqueeze(-1).to(accumulate)
            positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=accumulate).view(1, -1, 1)
            positions = positions - mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1)
            weighted = weights * positions
            total = (hidden * weighted).sum(dim=1)
            vectors.append((total / torch.clamp(weighted.sum(dim=1), min=1e-9)).to(hidden.dtype))
        else:  # lasttoken: the last real token, left or right padding
            values, indices = mask.flip(1).max(1)
            length = hidden.shape[1]
            indices = torch.where(values == 0, length - 1, indices)
            last = length - indices - 1
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            vectors.append((hidden * mask.unsqueeze(-1).to(hidden.dtype))[rows, last])
    return vectors[0] if len(vectors) == 1 else torch.cat(vectors, dim=-1)


def embedding_limit(folder: Path, spec: EmbeddingSpec | None = None) -> int | None:
    """Tokens per text the model in ``folder`` sees at most, read from its files (None: not stated):
    ``max_seq_length``, else the smaller of ``model_max_length`` and ``max_position_embeddings``."""
    spec = spec or read_embedding_spec(folder)
    if spec.max_seq_length is not None:
        return spec.max_seq_length
    limits = []
    for name, key in (("tokenizer_config.json", "model_max_length"), ("config.json", "max_position_embeddings")):
        path = folder / name
        data = _read_json(path) if path.is_file() else {}
        value = data.get(key) if isinstance(data, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**9:
            limits.append(value)
    return min(limits) if limits else None
