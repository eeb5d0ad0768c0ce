"""The one refusal shared by the scenarios that score tokens (evaluation, perplexity)."""

from __future__ import annotations

from llmbench.backends.base import Backend
from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef, model_family


def refuse_unscorable(backend_cls: type[Backend], model: ModelRef, what: str) -> None:
    """Refuse, before loading, a backend that cannot score ``what`` or a seq2seq model (scoring is causal)."""
    if not backend_cls.can_score:
        raise InvalidOptionError(
            f"the {backend_cls.name} backend cannot score {what}", "use the llama.cpp or transformers backend"
        )
    if model.format == "hf" and model_family(model) == "seq2seq":
        raise InvalidOptionError(
            f"{model.name} is a seq2seq (encoder-decoder) model; llmbench scores causal models only",
            f"measure its generation with: llmbench run {model.location} -b transformers",
        )
