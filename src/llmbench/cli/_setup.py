"""The model set-up options, shared by every command that loads a model.

``@model_setup_options`` adds ``-b/--backend``, ``--n-ctx``, ``-t/--threads``, ``--device``,
``--dtype`` and ``-o/--option KEY=VALUE`` to a command and hands it one ``setup`` argument (a
:class:`~llmbench.harness.ModelSetup`) built from them and the command's model argument, so each
option has one name, one default and one meaning in ``run``, ``eval``, ``perplexity`` and ``load``
(and, through the same fields, in sweep files).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

SETUP_OPTIONS = ("backend", "n_ctx", "threads", "device", "dtype", "options")


def parse_options(values: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``-o KEY=VALUE`` pairs; numbers become numbers and true/false booleans, the rest stays text."""
    from llmbench.errors import InvalidOptionError

    options: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidOptionError(f"option {item[:80]!r} is not KEY=VALUE", "write it as -o n_gpu_layers=20")
        options[key.strip()] = coerce(raw.strip())
    return options


def coerce(raw: str) -> Any:
    """The value of ``-o KEY=VALUE``: int, float, true/false, or the text itself."""
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def model_setup_options(model_param: str = "model") -> Callable[[F], F]:
    """Add the set-up options to a command; it receives ``setup`` instead of them."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from llmbench.harness import ModelSetup

            values = {name: kwargs.pop(name) for name in SETUP_OPTIONS}
            model = kwargs.pop(model_param)
            kwargs["setup"] = ModelSetup(
                model=model or None,
                backend=values["backend"],
                n_ctx=values["n_ctx"],
                threads=values["threads"],
                device=values["device"],
                dtype=values["dtype"],
                options=parse_options(values["options"]),
            )
            return command(*args, **kwargs)

        options = [
            click.option("-b", "--backend", help="Backend (default: llama.cpp for GGUF, transformers for folders)."),
            click.option("--n-ctx", type=int, default=2048, show_default=True, help="Context size to allocate."),
            click.option("-t", "--threads", type=int, help="CPU threads (default: all CPUs this process may use)."),
            click.option("--device", help="cpu, cuda, cuda:N, mps or auto."),
            click.option("--dtype", help="auto, float32, bfloat16 or float16 (transformers)."),
            click.option(
                "-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Backend option, repeatable."
            ),
        ]
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate
