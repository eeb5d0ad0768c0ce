"""Loading a transformers model: ``from_pretrained`` arguments from the load options, the auto class
of the model's family, quantization, attention and adapters; every failure one line with a hint.

Kept apart from generation so each family's module (``_backend``: causal and seq2seq generation,
``_embed``, ``_vision``) shares one loader and one set of checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from llmbench.backends.base import LoadOptions, option_flag
from llmbench.errors import InvalidModelError, InvalidOptionError, missing_extra
from llmbench.models import ModelFamily, ModelRef, import_transformers

DTYPES = ("auto", "float32", "float16", "bfloat16")
QUANTIZATIONS = ("bnb-4bit", "bnb-8bit")
KNOWN_OPTIONS = frozenset(
    {"attn_implementation", "device_map", "quantization", "adapter", "trust_remote_code", "allow_pickle"}
)
"""The load-time ``-o`` names; generation-time ones are the backend's."""

AUTO_CLASSES: dict[ModelFamily, tuple[str, ...]] = {
    "causal": ("AutoModelForCausalLM",),
    "seq2seq": ("AutoModelForSeq2SeqLM",),
    "vision": ("AutoModelForImageTextToText", "AutoModelForVision2Seq"),
    "embedding": ("AutoModel",),
}
"""The auto class each family loads through (the first the installed transformers has)."""


def import_runtime() -> tuple[Any, Any]:
    """The runtime libraries: ``torch`` and ``transformers``."""
    return import_transformers()


@contextlib.contextmanager
def _quiet_transformers(transformers: Any) -> Iterator[None]:
    """No progress bars or info logs from transformers while loading (llmbench shows its own)."""
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils

    gguf_utils: Any = modeling_gguf_pytorch_utils

    logging = transformers.utils.logging
    bars = logging.is_progress_bar_enabled()
    verbosity = logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:  # the GGUF de-quantizer calls tqdm directly
        gguf_utils.tqdm = partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _bitsandbytes_config(transformers: Any, torch: Any, quantization: str) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise missing_extra("bitsandbytes", "bnb") from None
    if quantization == "bnb-8bit":
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def apply_adapter(model: Any, adapter: str) -> Any:
    try:
        from peft import PeftModel
    except ImportError:
        raise missing_extra("peft", "peft") from None
    try:
        return PeftModel.from_pretrained(model, adapter)
    except (OSError, ValueError) as exc:
        raise InvalidModelError(f"could not apply adapter {adapter}: {exc}", "pass a PEFT adapter folder") from None


def load_kwargs(model: ModelRef, options: LoadOptions, threads: int | None) -> dict[str, Any]:
    """``from_pretrained`` arguments from the load options, every value checked (no import needed).

    ``dtype`` stays a name and ``quantization_config`` the quantization's name: :func:`_load_model`
    turns them into torch and transformers objects. Remote code and pickle weights are off unless
    the options turn them on.
    """
    dtype = options.dtype or ("float32" if model.format == "gguf" else "auto")
    if dtype not in DTYPES:
        raise InvalidOptionError(f"unknown dtype {dtype!r}", f"choose one of: {', '.join(DTYPES)}")
    extra = options.extra
    device = options.device or "cpu"
    kwargs: dict[str, Any] = {
        "trust_remote_code": option_flag("trust_remote_code", extra.get("trust_remote_code", False)),
        "dtype": dtype,
    }
    if model.format == "gguf":
        kwargs["gguf_file"] = model.path.name
    if model.format == "hf":
        kwargs["use_safetensors"] = None if option_flag("allow_pickle", extra.get("allow_pickle", False)) else True
    if "device_map" in extra:
        kwargs["device_map"] = extra["device_map"]
    elif device == "auto":
        kwargs["device_map"] = "auto"
    if "attn_implementation" in extra:
        kwargs["attn_implementation"] = str(extra["attn_implementation"])
    quantization = extra.get("quantization")
    if quantization:
        if quantization not in QUANTIZATIONS:
            raise InvalidOptionError(
                f"unknown quantization {quantization!r}", f"choose one of: {', '.join(QUANTIZATIONS)}"
            )
        kwargs["quantization_config"] = quantization
        kwargs.setdefault("device_map", "auto" if device in ("auto", "cpu") else device)
    return kwargs


def load_model(
    runtime: tuple[Any, Any], model: ModelRef, kwargs: dict[str, Any], family: ModelFamily = "causal"
) -> tuple[Any, Any]:
    """The tokenizer and the model of ``family``, loaded quietly; failures become one-line errors with a hint."""
    torch, transformers = runtime
    kwargs = dict(kwargs)
    if kwargs["dtype"] != "auto":
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    if "quantization_config" in kwargs:
        kwargs["quantization_config"] = _bitsandbytes_config(transformers, torch, kwargs["quantization_config"])
    shared = {key: kwargs[key] for key in ("trust_remote_code", "gguf_file") if key in kwargs}
    source = str(model.folder)
    try:
        with _quiet_transformers(transformers):
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **shared)
            return tokenizer, auto_class(transformers, family).from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = "check the folder holds a complete model"
        if "safetensors" in message.lower() and kwargs.get("use_safetensors"):
            hint = "this folder has only pickle weights; pass -o allow_pickle=true if you trust it"
        raise InvalidModelError(f"transformers could not load {model.name}: {message}", hint) from None


def auto_class(transformers: Any, family: ModelFamily) -> Any:
    """The auto class that loads ``family`` in the installed transformers."""
    for name in AUTO_CLASSES[family]:
        found = getattr(transformers, name, None)
        if found is not None:
            return found
    raise InvalidModelError(
        f"the installed transformers has no {AUTO_CLASSES[family][0]} for {family} models",
        "upgrade transformers: pip install -U transformers",
    )
