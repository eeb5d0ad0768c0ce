"""Models on this machine: resolving a model argument, its spec, parameters and tokenizer.

What other packages use is exported here; the ``_private`` modules stay inside ``models``. Nothing
here imports a runtime library at import time (``import_llama_cpp`` and ``import_transformers`` do
it when called, with the install hint when the library is absent).
"""

from llmbench.models._family import FAMILIES, ModelFamily, model_family
from llmbench.models._ggml import KV_CACHE_TYPES, KVCacheType
from llmbench.models._gguf import GGUFHeader, read_gguf_header
from llmbench.models._inspect import FIELDS as INSPECT_FIELDS
from llmbench.models._inspect import Inspection, inspect_model
from llmbench.models._inspect import cell as inspect_cell
from llmbench.models._params import ParameterCount, count_parameters
from llmbench.models._resolve import DEFAULT_MODEL_NAME, ModelRef, default_model_path, resolve_model
from llmbench.models._runtimes import import_llama_cpp, import_transformers, quiet_stderr
from llmbench.models._spec import ModelSpec, Seq2SeqSpec, adapter_base, read_spec
from llmbench.models._tokens import LocalTokenizer, TokenStats, load_tokenizer, token_stats, tokenizer_for

__all__ = [
    "DEFAULT_MODEL_NAME",
    "FAMILIES",
    "INSPECT_FIELDS",
    "KV_CACHE_TYPES",
    "GGUFHeader",
    "Inspection",
    "KVCacheType",
    "LocalTokenizer",
    "ModelFamily",
    "ModelRef",
    "ModelSpec",
    "ParameterCount",
    "Seq2SeqSpec",
    "TokenStats",
    "adapter_base",
    "count_parameters",
    "default_model_path",
    "import_llama_cpp",
    "import_transformers",
    "inspect_cell",
    "inspect_model",
    "load_tokenizer",
    "model_family",
    "quiet_stderr",
    "read_gguf_header",
    "read_spec",
    "resolve_model",
    "token_stats",
    "tokenizer_for",
]
