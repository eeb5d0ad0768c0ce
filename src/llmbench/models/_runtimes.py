"""Importing the runtime libraries models are read with, once, with the install hint when absent.

The backends (loading weights) and ``models`` itself (reading a tokenizer without the weights) use
the same import functions, so a missing library gives the same ``pip install 'llmbench[...]'``
everywhere. The libraries are imported when a function is called, never when this module is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from llmbench.errors import missing_extra


def import_llama_cpp() -> Any:
    """The ``llama_cpp`` module (llama-cpp-python)."""
    try:
        import llama_cpp
    except ImportError:
        raise missing_extra("llama-cpp-python", "llama-cpp") from None
    return llama_cpp


def import_transformers() -> tuple[Any, Any]:
    """The ``torch`` and ``transformers`` modules."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise missing_extra(exc.name or "transformers", "hf") from None
    return torch, transformers


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level logging on fd 2 (llama.cpp's, while a model or vocabulary loads)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
