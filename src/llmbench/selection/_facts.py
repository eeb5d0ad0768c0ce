"""Spec facts of a configuration's model, read from its files (as ``llmbench inspect`` and ``plan`` do).

A model that is gone, a server URL or a file the readers cannot parse gives no facts (None), never
an error: the leaderboard shows what was measured whatever became of the files since.
"""

from __future__ import annotations

import functools
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.selection._configs import Configuration
from llmbench.selection._types import SpecFacts


def read_facts(configuration: Configuration) -> SpecFacts | None:
    """Parameters, context length, licence, quantization, size on disk and the memory plan."""
    if configuration.model.startswith(("http://", "https://")):
        return None
    values = configuration.values()
    dtype = values.get("dtype")
    n_ctx = values.get("n_ctx")
    return _facts(
        configuration.model,
        configuration.backend,
        int(n_ctx) if isinstance(n_ctx, int) else 2048,
        dtype if isinstance(dtype, str) and dtype != "auto" else None,
    )


@functools.lru_cache(maxsize=256)
def _facts(model: str, backend: str, n_ctx: int, dtype: str | None) -> SpecFacts | None:
    from llmbench.models import count_parameters, read_spec, resolve_model

    try:
        ref = resolve_model(model)
        spec = read_spec(ref)
    except (LLMBenchError, OSError, ValueError):
        return None
    try:
        params: Any = count_parameters(spec)
    except (LLMBenchError, OSError, ValueError, RuntimeError, ImportError):
        params = None
    return SpecFacts(
        parameters=params.total if params is not None else None,
        context_length=spec.max_context,
        license=spec.license,
        quantization=_quantization(spec.quantization),
        disk_bytes=ref.size_bytes,
        planned_peak_bytes=_plan(spec, params, backend, n_ctx, dtype) if params is not None else None,
    )


def _quantization(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        method = value.get("quant_method") or value.get("gguf_file_type") or value.get("type")
        return str(method) if method else ", ".join(f"{k}={v}" for k, v in sorted(value.items()))[:40]
    return str(value)


def _plan(spec: Any, params: Any, backend: str, n_ctx: int, dtype: str | None) -> int | None:
    from llmbench.planning import PlanRequest, plan_memory

    if backend not in ("llama.cpp", "transformers"):
        return None
    try:
        return plan_memory(spec, params, PlanRequest(backend=backend, context=n_ctx, dtype=dtype)).total
    except (LLMBenchError, ValueError, KeyError):
        return None
