"""A plan for a model argument, with the device's size and the measured peak from the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from llmbench.measurement.results import GenerationResult, MemoryUsage
from llmbench.models import ModelRef, count_parameters, read_spec, resolve_model
from llmbench.planning._plan import MemoryPlan, PlanRequest, plan_memory


@dataclass(frozen=True)
class Measured:
    run_id: str
    peak_bytes: int
    created_at: str
    what: str = "peak RSS"
    """The measured figure the estimate is compared with: ``peak RSS`` (CPU), ``torch allocated peak``
    (a GPU run on torch), ``NVML process peak`` (a GPU run without torch, llama.cpp offloaded)."""


@dataclass(frozen=True)
class PlanResult:
    plan: MemoryPlan
    measured: Measured | None

    @property
    def error(self) -> float | None:
        if self.measured is None or not self.measured.peak_bytes:
            return None
        return (self.plan.total - self.measured.peak_bytes) / self.measured.peak_bytes

    def as_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "model": plan.model,
            "backend": plan.request.backend,
            "weights_format": plan.weights_format,
            "context": plan.request.context,
            "batch": plan.request.batch,
            "purpose": plan.request.purpose,
            "device": plan.request.device,
            "terms": [{"name": t.name, "bytes": t.bytes, "formula": t.formula} for t in plan.terms],
            "total_bytes": plan.total,
            "kv_bytes_per_token": plan.kv_bytes_per_token(),
            "device_bytes": plan.device_bytes,
            "fits": plan.fits,
            "notes": list(plan.notes),
            "measured": None
            if self.measured is None
            else {
                "run_id": self.measured.run_id,
                "peak_bytes": self.measured.peak_bytes,
                "what": self.measured.what,
                "error": self.error,
            },
        }


def _device_bytes(device: str) -> int | None:
    if device == "cpu":
        import psutil

        return int(psutil.virtual_memory().total)
    from llmbench.measurement.fingerprint import gpus

    found = gpus()
    return int(found[0]["memory_bytes"]) if found else None


def plan_for(
    model: str | None,
    *,
    backend: str | None,
    dtype: str | None,
    kv_dtype: str | None,
    context: int,
    prompt: int | None,
    batch: int,
    purpose: Literal["generate", "score"],
    device: Literal["cpu", "gpu"],
    device_bytes: int | None,
) -> PlanResult:
    ref = resolve_model(model)
    spec = read_spec(ref)
    params = count_parameters(spec)
    backend = backend or planned_backend(ref)
    measured_run = _matching_run(str(ref.path), backend, dtype, context, prompt, device)
    baseline = baseline_source = None
    if measured_run is not None and device == "cpu":
        baseline = measured_run.memory.rss_before_load_bytes
        baseline_source = f"measured in run {measured_run.run_id}"
    request = PlanRequest(
        backend=backend,
        context=context,
        prompt=prompt,
        batch=batch,
        dtype=dtype,
        kv_dtype=kv_dtype,
        purpose=purpose,
        device=device,
        device_bytes=device_bytes if device_bytes is not None else _device_bytes(device),
        process_baseline=baseline,
    )
    plan = plan_memory(spec, params, request, baseline_source)
    measured = None
    if measured_run is not None:
        figure = _measured_figure(measured_run.memory, device)
        if figure is not None:
            measured = Measured(measured_run.run_id, figure[1], measured_run.created_at, figure[0])
    return PlanResult(plan, measured)


def _measured_figure(memory: MemoryUsage, device: str) -> tuple[str, int] | None:
    """What a stored run measured that a plan for ``device`` estimates: the process's peak RSS on the
    CPU; on a GPU torch's allocated peak (the plan, like it, leaves the CUDA context out), else
    NVML's figure for the process (llama.cpp offloaded: no torch)."""
    if device == "cpu":
        return ("peak RSS", memory.peak_rss_bytes) if memory.peak_rss_bytes else None
    if memory.peak_vram_allocated_bytes:
        return "torch allocated peak", memory.peak_vram_allocated_bytes
    if memory.peak_vram_process_bytes:
        return "NVML process peak", memory.peak_vram_process_bytes
    return None


def planned_backend(model: ModelRef) -> str:
    """The backend a plan assumes when none is named: llama.cpp for a GGUF file, transformers otherwise.

    The memory model knows these two (``PROCESS_BASELINE``); they are also the backends a local
    model of each format runs on by default.
    """
    return "llama.cpp" if model.format == "gguf" else "transformers"


def kv_context(backend: str, config: dict[str, Any]) -> int:
    """The tokens a stored run's KV cache held: n_ctx on llama.cpp, prompt + new tokens otherwise."""
    if backend == "llama.cpp":
        return int(config.get("n_ctx") or 0)
    return int(config.get("prompt_length") or config.get("prompt_tokens") or 0) + int(config.get("max_new_tokens") or 0)


@dataclass(frozen=True)
class _StoredRun:
    run_id: str
    created_at: str
    memory: MemoryUsage


def _matching_run(
    model_path: str, backend: str, dtype: str | None, context: int, prompt: int | None, device: str = "cpu"
) -> _StoredRun | None:
    """The newest successful stored run of this model, backend, dtype and KV context on the kind of
    device (a GPU run has GPU figures, a CPU run none), if any."""
    from llmbench.store import Store

    with Store() as store:
        for record in store.runs(kind="generate"):
            config = record.config
            if record.status != "ok" or record.model_path != model_path or record.backend != backend:
                continue
            if (config.get("dtype") or None) != (dtype or None) or kv_context(backend, config) != context:
                continue
            if prompt is not None and config.get("prompt_length") != prompt:
                continue
            result = record.result
            if not isinstance(result, GenerationResult):
                continue
            on_gpu = bool(result.memory.peak_vram_allocated_bytes or result.memory.peak_vram_process_bytes)
            if on_gpu == (device == "gpu") and _measured_figure(result.memory, device) is not None:
                return _StoredRun(record.id, record.created_at, result.memory)
    return None
