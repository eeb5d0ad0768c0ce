"""Memory planning: how much RAM or VRAM a model needs on a backend, before running it."""

from llmbench.planning._compare import PlanResult, kv_context, plan_for, planned_backend
from llmbench.planning._plan import MemoryPlan, PlanRequest, PlanTerm, bits_per_weight, plan_memory
from llmbench.planning._roofline import DecodeWork, decode_work, roofline, scaled

__all__ = [
    "DecodeWork",
    "MemoryPlan",
    "PlanRequest",
    "PlanResult",
    "PlanTerm",
    "bits_per_weight",
    "decode_work",
    "kv_context",
    "plan_for",
    "plan_memory",
    "planned_backend",
    "roofline",
    "scaled",
]
