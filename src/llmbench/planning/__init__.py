"""Memory planning: how much RAM or VRAM a model needs on a backend, before running it."""

from llmbench.planning._compare import PlanResult, kv_context, plan_for, planned_backend
from llmbench.planning._plan import MemoryPlan, PlanRequest, PlanTerm, bits_per_weight, plan_memory

__all__ = [
    "MemoryPlan",
    "PlanRequest",
    "PlanResult",
    "PlanTerm",
    "bits_per_weight",
    "kv_context",
    "plan_for",
    "plan_memory",
    "planned_backend",
]
