"""A configuration: what one leaderboard row stands for (a model, a backend, its set-up settings).

Two stored runs belong to the same configuration when they ran the same model file (its resolved
location), on the same backend, with the same set-up: ``n_ctx``, ``threads`` (as the backend
resolved them), ``device``, ``dtype`` and every backend option. What a run did with the loaded model
(prompt length, new tokens, repetitions; an evaluation's task and shots) is not part of it: a timed
run and an evaluation of one configuration are joined, an evaluation on llama.cpp never shows on a
transformers row of the same GGUF.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from llmbench.harness import ModelSetup
from llmbench.store import RunRecord

SETUP_KEYS = tuple(f.name for f in fields(ModelSetup) if f.name not in ("model", "backend", "options"))
"""The set-up settings (besides the options) that make a configuration, as stored in a run's config:
the load settings of :class:`~llmbench.harness.ModelSetup` (model, backend and options are kept apart)."""
_FLAGS = {"n_ctx": "--n-ctx", "threads": "-t"}
"""Set-up settings whose flag is not ``--NAME`` (underscores as dashes)."""
_HIDDEN_OPTIONS = frozenset({"api_key"})


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True, order=True)
class Configuration:
    """A model on a backend with its set-up; values kept as JSON text so that it hashes."""

    model: str
    """The model's resolved location (file, folder or server URL)."""
    backend: str
    setup: tuple[tuple[str, str], ...] = ()
    """``(name, JSON value)`` of each of :data:`SETUP_KEYS` the runs stored."""
    options: tuple[tuple[str, str], ...] = ()
    """``(name, JSON value)`` of each backend option, sorted."""

    def values(self) -> dict[str, Any]:
        """Every setting by name (options by their own name), decoded."""
        return {name: json.loads(value) for name, value in (*self.setup, *self.options)}

    def describe(self, names: Iterable[str] | None = None) -> str:
        """``n_ctx=2048 flash_attn=true``: the settings named (all when None), in stored order."""
        wanted = None if names is None else set(names)
        return " ".join(
            f"{name}={_text(json.loads(value))}"
            for name, value in (*self.setup, *self.options)
            if wanted is None or name in wanted
        )

    def command(self, verb: str, *extra: str) -> str:
        """The exact ``llmbench VERB`` command that runs this configuration (shell-quoted)."""
        parts = ["llmbench", verb, self.model, "-b", self.backend]
        for name, value in self.setup:
            parts += [_FLAGS.get(name, "--" + name.replace("_", "-")), _text(json.loads(value))]
        for name, value in self.options:
            parts += ["-o", f"{name}={_text(json.loads(value))}"]
        parts += list(extra)
        return " ".join(shlex.quote(part) for part in parts)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def configuration_of(record: RunRecord) -> Configuration:
    """The configuration a stored run measured."""
    config: Mapping[str, Any] = record.config or {}
    setup = tuple((name, _json(config[name])) for name in SETUP_KEYS if config.get(name) is not None)
    raw = config.get("options")
    options = raw if isinstance(raw, Mapping) else {}
    chosen = tuple(
        (str(name), _json(value))
        for name, value in sorted(options.items())
        if name not in _HIDDEN_OPTIONS and value is not None
    )
    model = record.model_path or str(config.get("model_path") or config.get("model") or record.model)
    return Configuration(model, record.backend, setup, chosen)


def label_of(record: RunRecord) -> str:
    """The model's name for people: a sweep's label, else the stored model name."""
    sweep = record.config.get("sweep") if isinstance(record.config, Mapping) else None
    label = sweep.get("label") if isinstance(sweep, Mapping) else None
    return str(label or record.model)


def varying(configurations: Iterable[Configuration]) -> list[str]:
    """The setting names whose value differs between ``configurations`` (what labels need)."""
    seen: dict[str, set[str | None]] = {}
    listed = list(configurations)
    for configuration in listed:
        values = dict((*configuration.setup, *configuration.options))
        for name in values:
            seen.setdefault(name, set())
    for configuration in listed:
        values = dict((*configuration.setup, *configuration.options))
        for name, found in seen.items():
            found.add(values.get(name))
    return [name for name, found in seen.items() if len(found) > 1]
