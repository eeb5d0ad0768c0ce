"""llmbench: measure language models for speed, memory and quality on your own hardware.

The public API is small and imported lazily so that ``import llmbench`` (and ``llmbench --help``)
never pulls in torch or llama.cpp::

    from llmbench import BenchmarkConfig, run_benchmark
    result = run_benchmark(BenchmarkConfig(model="path/to/model.gguf"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "BenchmarkConfig": "llmbench.scenarios.single_run",
    "run_benchmark": "llmbench.scenarios.single_run",
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
    "GenerationConfig",
    "LLMBenchError",
    "Store",
    "__version__",
    "get_backend",
    "resolve_model",
    "run_benchmark",
]

if TYPE_CHECKING:
    from llmbench.backends import get_backend
    from llmbench.backends.base import Backend, GenerationConfig
    from llmbench.errors import LLMBenchError
    from llmbench.models import resolve_model
    from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark
    from llmbench.store import Store


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'llmbench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
