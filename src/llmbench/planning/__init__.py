"""Memory planning: how much RAM or VRAM a model needs on a backend, before running it."""

from llmbench.planning._plan import MemoryPlan, PlanRequest, PlanTerm, bits_per_weight, plan_memory

__all__ = ["MemoryPlan", "PlanRequest", "PlanTerm", "bits_per_weight", "plan_memory"]
