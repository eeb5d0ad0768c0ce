"""Hugging Face transformers: causal, seq2seq, embedding and vision-language models on one backend.

``_load`` turns the load options into ``from_pretrained`` arguments and picks the auto class of the
model's family (:func:`llmbench.models.model_family`); ``_backend`` holds :class:`TransformersBackend`.
What other backends reuse (the pipeline backend loads, samples, streams and pools exactly as this one)
is exported here: loading (:func:`load_model`, :func:`load_kwargs`, :func:`check_supported`,
:func:`import_runtime`, :data:`KNOWN_OPTIONS`), :func:`sampling_kwargs`, :func:`timing_streamer`,
and the embedding pieces (:func:`read_embedding_spec`, :func:`token_limit`, :func:`sentence_vectors`).
"""

from llmbench.backends.transformers._backend import TransformersBackend
from llmbench.backends.transformers._backend import _sampling as sampling_kwargs
from llmbench.backends.transformers._embed import (
    EmbeddingSpec,
    embedding_limit,
    read_embedding_spec,
    sentence_vectors,
    token_limit,
)
from llmbench.backends.transformers._load import (
    KNOWN_OPTIONS,
    check_supported,
    import_runtime,
    load_kwargs,
    load_model,
)
from llmbench.backends.transformers._streamer import timing_streamer
from llmbench.backends.transformers._tokenizer import HFTokenizerMethods
from llmbench.backends.transformers._vision import DEFAULT_PROMPT as DEFAULT_IMAGE_PROMPT
from llmbench.backends.transformers._vision import (
    image_text_generation,
    image_token_counts,
    image_token_id,
    require_images,
)

__all__ = [
    "DEFAULT_IMAGE_PROMPT",
    "KNOWN_OPTIONS",
    "EmbeddingSpec",
    "HFTokenizerMethods",
    "TransformersBackend",
    "check_supported",
    "embedding_limit",
    "image_text_generation",
    "image_token_counts",
    "image_token_id",
    "import_runtime",
    "load_kwargs",
    "load_model",
    "read_embedding_spec",
    "require_images",
    "sampling_kwargs",
    "sentence_vectors",
    "timing_streamer",
    "token_limit",
]
