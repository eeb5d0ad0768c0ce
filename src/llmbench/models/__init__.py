"""Turning a model argument into a local, validated model reference."""

from llmbench.models._resolve import DEFAULT_MODEL_NAME, ModelRef, default_model_path, resolve_model

__all__ = ["DEFAULT_MODEL_NAME", "ModelRef", "default_model_path", "resolve_model"]
