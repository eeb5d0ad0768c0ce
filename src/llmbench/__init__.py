"""llmbench: measure language models for speed, memory and quality on your own hardware.

The public API is small and imported lazily so that ``import llmbench`` (and ``llmbench --help``)
never pulls in torch or llama.cpp::

    from llmbench import BenchmarkConfig, ModelSetup, run_benchmark
    record = run_benchmark(BenchmarkConfig(setup=ModelSetup("path/to/model.gguf", threads=4)))
    record.result.summary["decode_tok_s"].mean
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "ModelSetup": "llmbench.harness",
    "BenchmarkConfig": "llmbench.scenarios.single_run",
    "run_benchmark": "llmbench.scenarios.single_run",
    "EvalConfig": "llmbench.scenarios.evaluation",
    "run_eval": "llmbench.scenarios.evaluation",
    "PerplexityConfig": "llmbench.scenarios.perplexity",
    "run_perplexity": "llmbench.scenarios.perplexity",
    "LoadConfig": "llmbench.scenarios.load",
    "run_load": "llmbench.scenarios.load",
    "EmbedConfig": "llmbench.scenarios.embedding",
    "run_embedding": "llmbench.scenarios.embedding",
    "embed": "llmbench.scenarios.embedding",
    "Backend": "llmbench.backends.base",
    "GenerationConfig": "llmbench.backends.base",
    "get_backend": "llmbench.backends",
    "resolve_model": "llmbench.models",
    "LLMBenchError": "llmbench.errors",
    "Store": "llmbench.store",
}

__all__ = [
    "Backend",
    "BenchmarkConfig",
    "EmbedConfig",
    "EvalConfig",
    "GenerationConfig",
    "LLMBenchError",
    "LoadConfig",
    "ModelSetup",
    "PerplexityConfig",
    "Store",
    "__version__",
    "embed",
    "get_backend",
    "resolve_model",
    "run_benchmark",
    "run_embedding",
    "run_eval",
    "run_load",
    "run_perplexity",
]

if TYPE_CHECKING:
    from llmbench.backends import get_backend
    from llmbench.backends.base import Backend, GenerationConfig
    from llmbench.errors import LLMBenchError
    from llmbench.harness import ModelSetup
    from llmbench.models import resolve_model
    from llmbench.scenarios.embedding import EmbedConfig, embed, run_embedding
    from llmbench.scenarios.evaluation import EvalConfig, run_eval
    from llmbench.scenarios.load import LoadConfig, run_load
    from llmbench.scenarios.perplexity import PerplexityConfig, run_perplexity
    from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark
    from llmbench.store import Store


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'llmbench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
