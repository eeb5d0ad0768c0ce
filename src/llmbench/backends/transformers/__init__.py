"""Hugging Face transformers: causal, seq2seq, embedding and vision-language models on one backend.

``_load`` turns the load options into ``from_pretrained`` arguments and picks the auto class of the
model's family (:func:`llmbench.models.model_family`); ``_backend`` holds :class:`TransformersBackend`.
"""

from llmbench.backends.transformers._backend import TransformersBackend
from llmbench.backends.transformers._embed import EmbeddingSpec, embedding_limit, read_embedding_spec

__all__ = ["EmbeddingSpec", "TransformersBackend", "embedding_limit", "read_embedding_spec"]
