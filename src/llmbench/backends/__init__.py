"""The backend registry.

Backends are found through the ``llmbench.backends`` entry-point group; llmbench's own backends
register there the same way a third-party package would::

    [project.entry-points."llmbench.backends"]
    mybackend = "my_package.backend:MyBackend"

``LLMBENCH_LOAD_BACKENDS=llama.cpp,transformers`` limits which entry points are loaded (an empty
value loads none but the built-ins' fallbacks). Loading an entry point imports only the backend's
module; the runtime library (torch, llama_cpp ...) is imported when a model is loaded.
"""

from __future__ import annotations

import difflib
import os
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING, Any

from llmbench.errors import BackendUnavailableError

if TYPE_CHECKING:
    from llmbench.backends.base import Backend
    from llmbench.backends.batching import BatchEngine
    from llmbench.system.doctor import Finding

ENTRY_POINT_GROUP = "llmbench.backends"
LOAD_ENV_VAR = "LLMBENCH_LOAD_BACKENDS"

# Used when llmbench runs from a source tree whose entry points are not installed.
_BUILTIN = {
    "llama.cpp": "llmbench.backends.llama_cpp:LlamaCppBackend",
    "transformers": "llmbench.backends.transformers:TransformersBackend",
    "fake": "llmbench.backends.fake:FakeBackend",
    "vllm": "llmbench.backends.vllm:VLLMBackend",
    "openai": "llmbench.backends.openai:OpenAIBackend",
    "pipeline": "llmbench.backends.pipeline:PipelineBackend",
}
_ALIASES = {"llama_cpp": "llama.cpp", "llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "hf": "transformers"}


@cache
def _entry_points() -> dict[str, str]:
    found = dict(_BUILTIN)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[entry.name] = entry.value
    allowed = os.environ.get(LOAD_ENV_VAR)
    if allowed is not None:
        keep = {name.strip() for name in allowed.split(",") if name.strip()}
        found = {name: target for name, target in found.items() if name in keep or name in _BUILTIN}
    return found


def backend_names() -> list[str]:
    """Names of every registered backend, installed or not."""
    return sorted(_entry_points())


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name`` (aliases such as ``llama_cpp`` accepted)."""
    import importlib

    from llmbench.backends.base import Backend

    registry = _entry_points()
    canonical = _ALIASES.get(name, name)
    target = registry.get(canonical)
    if target is None:
        close = difflib.get_close_matches(name, registry, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BackendUnavailableError(
            f"unknown backend {name!r}", f"{hint}choose one of: {', '.join(sorted(registry))}"
        )
    module_name, _, attribute = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailableError(
            f"backend {name!r} could not be imported from {target} ({exc})",
            "reinstall the package that provides it",
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendUnavailableError(f"{target} is not an llmbench Backend subclass")
    return cls


def default_backend_for(model_format: str) -> str:
    """The backend a model of this format runs on when none is named."""
    return {"gguf": "llama.cpp", "server": "openai"}.get(model_format, "transformers")


def backend_findings() -> list[Finding]:
    """``llmbench doctor``'s backend part: each registered backend, installed or what is missing."""
    from llmbench.errors import LLMBenchError
    from llmbench.system.doctor import Finding

    findings = []
    for name in backend_names():
        if name == "fake":
            continue
        try:
            cls = get_backend(name)
            cls.check_available()
        except LLMBenchError as exc:
            findings.append(Finding(f"backend.{name}", "missing", exc.message, exc.hint))
            continue
        versions = ", ".join(f"{k} {v}" for k, v in cls.library_versions().items() if k != "system_info")
        findings.append(Finding(f"backend.{name}", "ok", versions or "installed"))
    try:
        import llama_cpp

        offload = bool(llama_cpp.llama_supports_gpu_offload())
        findings.append(
            Finding(
                "llama.cpp.gpu_offload",
                "ok" if offload else "info",
                f"this llama.cpp build {'can' if offload else 'cannot'} offload layers to a GPU",
                None if offload else "rebuild with CMAKE_ARGS=-DGGML_CUDA=on for GPU offload",
            )
        )
    except ImportError:
        pass
    return findings


def can_batch(backend: Backend) -> bool:
    """Whether ``backend`` can serve several requests decoded together (:func:`open_batch_engine`):
    llama.cpp, and a causal transformers model where the installed transformers has continuous
    batching. A load test queues the requests of any other."""
    if backend.name == "llama.cpp":
        return hasattr(backend, "llm")
    if backend.name == "transformers" and getattr(backend, "family", None) == "causal":
        from llmbench.backends.hf_continuous import has_continuous_batching

        return has_continuous_batching(getattr(backend, "hf_model", None))
    return False


def open_batch_engine(backend: Backend, slots: int, n_ctx: int | None = None) -> BatchEngine:
    """A continuous-batching engine of ``slots`` sequences (``n_ctx`` tokens each) on ``backend``'s
    loaded model; see :mod:`llmbench.backends.batching`."""
    if not can_batch(backend):
        raise BackendUnavailableError(f"the {backend.name} backend has no batched serving in this process")
    n_ctx = n_ctx or backend.options.n_ctx
    if backend.name == "transformers":
        from llmbench.backends.hf_continuous import TransformersBatchEngine

        model: Any = backend
        return TransformersBatchEngine(model.hf_model, frozenset(model.eos_ids), slots, n_ctx)
    from llmbench.backends.llama_cpp import LlamaCppBackend
    from llmbench.backends.llama_cpp_batch import LlamaCppBatchEngine

    if not isinstance(backend, LlamaCppBackend):
        raise BackendUnavailableError(f"{type(backend).__name__} is not llama.cpp's backend")
    return LlamaCppBatchEngine(backend, slots, n_ctx)
