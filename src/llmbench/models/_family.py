"""Which kind of model a folder holds, read from its files without loading anything.

The transformers backend loads each family through its own auto class and generation path; every
other command (``inspect``, ``plan``, a sweep) needs the same answer without importing torch, so
the rule is one pure scan here:

* a GGUF file, or a config naming a ``...ForCausalLM`` architecture: ``causal``;
* a config with a ``vision_config`` (BLIP-2, LLaVA, Idefics3, Qwen2-VL ...), or an architecture
  ``...ForImageTextToText`` / ``...ForVision2Seq``: ``vision``;
* ``is_encoder_decoder`` (T5, Flan-T5, BART) or an architecture ``...ForConditionalGeneration``
  without a vision tower: ``seq2seq``;
* a sentence-transformers folder (``modules.json``), or an encoder-only architecture (``...Model``,
  ``...ForMaskedLM``; BERT, RoBERTa, MPNet ...): ``embedding``.
"""

from __future__ import annotations

from typing import Literal

from llmbench.models._resolve import ModelRef

ModelFamily = Literal["causal", "seq2seq", "embedding", "vision"]
FAMILIES: tuple[ModelFamily, ...] = ("causal", "seq2seq", "embedding", "vision")

_VISION_SUFFIXES = ("ForImageTextToText", "ForVision2Seq", "ForVisionText2Text")
_ENCODER_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "albert", "electra", "deberta", "deberta-v2",
     "camembert", "nomic_bert", "modernbert", "e5", "bge"}
)  # fmt: skip


def model_family(model: ModelRef) -> ModelFamily:
    """The family of ``model`` (see the module docstring); servers and GGUF files are ``causal``."""
    if model.format != "hf":
        return "causal"
    from llmbench.models._spec import load_config_json

    config = load_config_json(model.folder)
    architectures = [str(name) for name in config.get("architectures") or [] if isinstance(name, str)]
    model_type = str(config.get("model_type") or "")
    if any(name.endswith("ForCausalLM") for name in architectures):
        return "causal"
    if "vision_config" in config or any(name.endswith(_VISION_SUFFIXES) for name in architectures):
        return "vision"
    if config.get("is_encoder_decoder") is True or any(
        name.endswith("ForConditionalGeneration") for name in architectures
    ):
        return "seq2seq"
    if (model.folder / "modules.json").is_file() or model_type in _ENCODER_TYPES:
        return "embedding"
    if architectures and all(name.endswith(("Model", "ForMaskedLM")) for name in architectures):
        return "embedding"
    return "causal"
