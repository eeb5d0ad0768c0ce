"""The model set-up: which model, on which backend, with which load settings.

Every command that loads a model (``run``, ``eval``, ``perplexity``, ``load`` on a local model,
``tokens``) and every sweep run describes it with one :class:`ModelSetup`, so ``--device``,
``--dtype``, ``--threads``, ``--n-ctx`` and ``-o KEY=VALUE`` mean the same everywhere. It is stored
flat in each run's config (``model``, ``backend``, ``n_ctx``, ``threads``, ``device``, ``dtype``,
``options``), beside the scenario's own fields, as it always was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from llmbench.backends import default_backend_for, get_backend
from llmbench.backends.base import Backend, LoadOptions
from llmbench.errors import InvalidModelError, InvalidOptionError
from llmbench.models import ModelRef, resolve_model
from llmbench.transport import split_credentials

SETUP_FIELDS = ("model", "backend", "n_ctx", "threads", "device", "dtype", "options")
"""The stored config keys that belong to the set-up (the rest belong to the scenario)."""

_FORMAT_NAMES = {
    "gguf": "GGUF files",
    "hf": "Hugging Face folders",
    "adapter": "PEFT adapter folders",
    "server": "model servers (URLs)",
}


@dataclass(frozen=True)
class ModelSetup:
    """A model and how to load it; validated on creation, before anything is loaded."""

    model: str | None = None
    """A GGUF file, an HF folder, a cached Hub id, a server URL, or None for the bundled SmolLM2."""
    backend: str | None = None
    """None picks by format: llama.cpp for GGUF, transformers for folders, openai for URLs."""
    n_ctx: int = 2048
    threads: int | None = None
    """CPU threads; None means every CPU this process may use."""
    device: str | None = None
    dtype: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """Backend-specific options (``-o KEY=VALUE``), checked by the backend's ``known_options``."""

    def __post_init__(self) -> None:
        if self.n_ctx < 8:
            raise InvalidOptionError(f"n_ctx must be at least 8, got {self.n_ctx}", "use --n-ctx 2048")
        if self.threads is not None and self.threads < 1:
            raise InvalidOptionError(f"threads must be at least 1, got {self.threads}", "use --threads 1 or more")
        if self.model is not None:
            # Credentials never travel inside the model URL: they are stored nowhere and sent as
            # the auth header they stand for (see llmbench.transport.split_credentials).
            clean, secret = split_credentials(self.model)
            if secret is not None:
                options = dict(self.options)
                options.setdefault("api_key", secret)
                object.__setattr__(self, "model", clean)
                object.__setattr__(self, "options", options)
        object.__setattr__(self, "options", dict(self.options))

    def resolve(self) -> ModelRef:
        return resolve_model(self.model, allow_server=True)

    def backend_class(self, model: ModelRef) -> type[Backend]:
        return select_backend(model, self.backend)

    def load_options(self) -> LoadOptions:
        return LoadOptions(
            n_ctx=self.n_ctx, threads=self.threads, device=self.device, dtype=self.dtype, extra=dict(self.options)
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form: no secret (an ``api_key`` option is dropped), every other field as is."""
        options = {k: v for k, v in self.options.items() if k != "api_key"}
        return {
            "model": self.model,
            "backend": self.backend,
            "n_ctx": self.n_ctx,
            "threads": self.threads,
            "device": self.device,
            "dtype": self.dtype,
            "options": options,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelSetup:
        """The set-up part of a stored (flat) config; scenario keys are ignored."""
        return cls(**{name: data[name] for name in SETUP_FIELDS if name in data and data[name] is not None})


C = TypeVar("C", bound="ScenarioConfig")


class ScenarioConfig:
    """Base of every scenario's config (a dataclass): a :class:`ModelSetup` in ``setup`` beside the
    scenario's own fields, stored flat, so a stored config reads the same whatever the scenario."""

    setup: ModelSetup
    renamed: ClassVar[Mapping[str, str]] = {}
    """Stored keys of older versions and the fields they are now (``max_tokens`` -> ``max_new_tokens``)."""

    def own_json(self) -> dict[str, Any]:
        """The scenario's own fields (tuples as lists), without the set-up's."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "setup"}  # type: ignore[arg-type]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in own.items()}

    def to_json(self) -> dict[str, Any]:
        """The stored, flat form: the set-up's fields beside the scenario's own."""
        return self.setup.to_json() | self.own_json()

    @classmethod
    def from_json(cls: type[C], data: Mapping[str, Any]) -> C:
        """A config from its stored form; unknown keys (``model_path``, facts learnt) are ignored."""
        data = {cls.renamed.get(k, k): v for k, v in data.items()}
        names = {f.name for f in fields(cls)} - {"setup"}  # type: ignore[arg-type]
        return cls(setup=ModelSetup.from_json(data), **{k: v for k, v in data.items() if k in names})  # type: ignore[call-arg]


def split_config(data: Mapping[str, Any]) -> tuple[ModelSetup, dict[str, Any]]:
    """A flat stored config split into its set-up and the scenario's own fields."""
    return ModelSetup.from_json(data), {k: v for k, v in data.items() if k not in SETUP_FIELDS}


def select_backend(model: ModelRef, name: str | None) -> type[Backend]:
    """The backend class for ``model``: named, or the default for its format; checked to load it."""
    backend = get_backend(name or default_backend_for(model.format))
    if model.format not in backend.formats:
        accepted = " and ".join(_FORMAT_NAMES[f] for f in sorted(backend.formats) if f in _FORMAT_NAMES)
        raise InvalidModelError(
            f"the {backend.name} backend loads {accepted or 'no local models'}, and {model.name} is one of the "
            f"{_FORMAT_NAMES[model.format]}",
            "pass the base model and -o adapter=FOLDER"
            if model.format == "adapter"
            else f"use --backend {default_backend_for(model.format)}",
        )
    backend.check_available()
    return backend
