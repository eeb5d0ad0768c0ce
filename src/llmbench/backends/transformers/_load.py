"""Loading a transformers model: ``from_pretrained`` arguments from the load options, the auto class
of the model's family, quantization, attention and adapters; every failure one line with a hint.

Kept apart from generation so each family's module (``_backend``: causal and seq2seq generation,
``_embed``, ``_vision``) shares one loader and one set of checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from llmbench.backends.base import LoadOptions, option_flag, option_float
from llmbench.errors import InvalidModelError, InvalidOptionError, missing_extra
from llmbench.models import ModelFamily, ModelRef, import_transformers

DTYPES = ("auto", "float32", "float16", "bfloat16")
QUANTIZATIONS = ("bnb-4bit", "bnb-8bit")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
BNB_4BIT_QUANT_TYPES = ("nf4", "fp4")
BNB_COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
BNB_4BIT_DEFAULTS: dict[str, Any] = {
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_compute_dtype": "bfloat16",
}
"""The seed project's QLoRA configuration: NF4, double quantization, bfloat16 compute."""
BNB_8BIT_DEFAULTS: dict[str, Any] = {"llm_int8_threshold": 6.0}
CHECKPOINT_QUANT_METHODS = ("gptq", "awq")
"""``quantization_config.quant_method`` values a checkpoint may carry that llmbench checks before loading."""
KNOWN_OPTIONS = frozenset(
    {"attn_implementation", "device_map", "quantization", "adapter", "trust_remote_code", "allow_pickle",
     "base", "merge_adapter", *BNB_4BIT_DEFAULTS, *BNB_8BIT_DEFAULTS}
)  # fmt: skip
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


def bitsandbytes_settings(extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bitsandbytes settings of ``-o quantization=bnb-4bit|bnb-8bit`` and its companions, each
    value checked (no import needed); None when the options ask for no bitsandbytes quantization.

    4-bit takes ``bnb_4bit_quant_type`` (nf4, fp4), ``bnb_4bit_use_double_quant`` and
    ``bnb_4bit_compute_dtype`` (:data:`BNB_4BIT_DEFAULTS`: the seed's QLoRA config); 8-bit takes
    ``llm_int8_threshold`` (outlier threshold, default 6.0). A companion without its quantization is
    refused rather than silently ignored.
    """
    quantization = extra.get("quantization")
    given_4bit = sorted(key for key in BNB_4BIT_DEFAULTS if key in extra)
    given_8bit = sorted(key for key in BNB_8BIT_DEFAULTS if key in extra)
    if not quantization:
        if given_4bit or given_8bit:
            name = (given_4bit or given_8bit)[0]
            method = "bnb-4bit" if given_4bit else "bnb-8bit"
            raise InvalidOptionError(f"-o {name} needs -o quantization={method}", f"add -o quantization={method}")
        return None
    if quantization not in QUANTIZATIONS:
        raise InvalidOptionError(f"unknown quantization {quantization!r}", f"choose one of: {', '.join(QUANTIZATIONS)}")
    own, other = (given_4bit, given_8bit) if quantization == "bnb-4bit" else (given_8bit, given_4bit)
    if other:
        raise InvalidOptionError(
            f"-o {other[0]} does not apply to -o quantization={quantization}",
            "4-bit takes bnb_4bit_*; 8-bit takes llm_int8_threshold",
        )
    if quantization == "bnb-8bit":
        threshold = option_float("llm_int8_threshold", extra.get("llm_int8_threshold", 6.0), minimum=0.0)
        return {"method": quantization, "llm_int8_threshold": threshold}
    settings = {"method": quantization, **BNB_4BIT_DEFAULTS}
    for key in own:
        settings[key] = extra[key]
    quant_type = str(settings["bnb_4bit_quant_type"]).lower()
    if quant_type not in BNB_4BIT_QUANT_TYPES:
        raise InvalidOptionError(
            f"unknown bnb_4bit_quant_type {quant_type!r}", f"choose one of: {', '.join(BNB_4BIT_QUANT_TYPES)}"
        )
    compute = str(settings["bnb_4bit_compute_dtype"]).lower()
    if compute not in BNB_COMPUTE_DTYPES:
        raise InvalidOptionError(
            f"unknown bnb_4bit_compute_dtype {compute!r}", f"choose one of: {', '.join(BNB_COMPUTE_DTYPES)}"
        )
    double = option_flag("bnb_4bit_use_double_quant", settings["bnb_4bit_use_double_quant"])
    return settings | {"bnb_4bit_quant_type": quant_type, "bnb_4bit_compute_dtype": compute,
                       "bnb_4bit_use_double_quant": double}  # fmt: skip


def _bitsandbytes_config(transformers: Any, torch: Any, settings: Mapping[str, Any]) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise missing_extra("bitsandbytes", "bnb") from None
    if settings["method"] == "bnb-8bit":
        return transformers.BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=settings["llm_int8_threshold"])
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings["bnb_4bit_quant_type"],
        bnb_4bit_use_double_quant=settings["bnb_4bit_use_double_quant"],
        bnb_4bit_compute_dtype=getattr(torch, settings["bnb_4bit_compute_dtype"]),
    )


def checkpoint_quantization(model: ModelRef) -> dict[str, Any] | None:
    """The ``quantization_config`` a Hugging Face folder's config.json carries (GPTQ, AWQ ...), or None."""
    if model.format != "hf":
        return None
    import json

    try:  # resolve_model read it as a JSON object already
        found = json.loads((model.folder / "config.json").read_text(encoding="utf-8")).get("quantization_config")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, dict) else None


def check_supported(model: ModelRef, kwargs: Mapping[str, Any]) -> None:
    """Refuse, before anything loads, a setting this machine cannot serve: bitsandbytes or flash
    attention without CUDA or their package, a GPTQ/AWQ checkpoint without its kernel packages.
    One error names every missing piece (the checks ``llmbench doctor`` shows)."""
    from llmbench.system.support import BITSANDBYTES, FLASH_ATTN, QUANT_METHOD_PACKAGES, require

    bnb = kwargs.get("quantization_config")
    if bnb is not None:
        require(f"-o quantization={bnb['method']}", cuda=True, packages=(BITSANDBYTES,))
    if kwargs.get("attn_implementation") == "flash_attention_2":
        require("-o attn_implementation=flash_attention_2", cuda=True, packages=(FLASH_ATTN,))
    stored = checkpoint_quantization(model)
    method = str(stored.get("quant_method", "")).lower() if stored else ""
    if method in QUANT_METHOD_PACKAGES:
        require(f"{model.name}, a {method.upper()} checkpoint,", packages=QUANT_METHOD_PACKAGES[method])


def apply_adapter(model: Any, adapter: str, *, merge: bool = False) -> tuple[Any, dict[str, Any]]:
    """``model`` with the PEFT adapter in folder ``adapter`` applied (merged into the weights when
    ``merge``), and the facts stored with the run: the adapter's parameter count and whether it
    was merged."""
    try:
        from peft import PeftModel
    except ImportError:
        raise missing_extra("peft", "peft") from None
    try:
        adapted = PeftModel.from_pretrained(model, adapter)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidModelError(f"could not apply adapter {adapter}: {message}", "pass a PEFT adapter folder") from None
    parameters = adapter_parameters(adapted)
    if merge:
        adapted = adapted.merge_and_unload()
    return adapted, {"adapter_parameters": parameters, "adapter_merged": merge}


def adapter_parameters(model: Any) -> int:
    """Parameters the loaded PEFT adapters add (LoRA A/B, DoRA magnitudes, saved module copies):
    what ``PeftModel.get_nb_trainable_parameters`` counts when the adapter is trainable."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    counted: set[int] = set()
    total = 0
    for module in model.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for name in module.adapter_layer_names:
            layer = getattr(module, name, None)
            if layer is None:
                continue
            for parameter in layer.parameters():
                if id(parameter) not in counted:
                    counted.add(id(parameter))
                    total += parameter.numel()
    for name, parameter in model.named_parameters():
        if "modules_to_save" in name and id(parameter) not in counted:
            counted.add(id(parameter))
            total += parameter.numel()
    return total


def adapter_parts(model: ModelRef, extra: Mapping[str, Any]) -> tuple[ModelRef, str | None, bool]:
    """The model to load, the adapter folder to apply on it (or None) and whether to merge it.

    ``llmbench run ADAPTER_DIR`` loads the base its ``adapter_config.json`` names (or ``--base``);
    ``llmbench run BASE -o adapter=DIR`` loads ``BASE``. ``merge_adapter`` or ``base`` without an
    adapter is refused, not ignored.
    """
    from llmbench.models import adapter_base

    merge = option_flag("merge_adapter", extra.get("merge_adapter", False))
    base = extra.get("base")
    if model.format == "adapter":
        if "adapter" in extra:
            raise InvalidOptionError(
                f"{model.name} is itself an adapter; -o adapter= applies one to a base model",
                "run the adapter folder alone, or the base model with -o adapter=FOLDER",
            )
        return adapter_base(model, None if base is None else str(base)), str(model.path), merge
    if base is not None:
        raise InvalidOptionError(
            f"--base applies to an adapter folder, and {model.name} is a model",
            "pass the adapter folder as MODEL, or drop --base",
        )
    adapter = extra.get("adapter")
    if adapter is None and merge:
        raise InvalidOptionError("-o merge_adapter needs an adapter", "run an adapter folder or add -o adapter=FOLDER")
    return model, None if adapter is None else str(adapter), merge


def load_kwargs(model: ModelRef, options: LoadOptions, threads: int | None) -> dict[str, Any]:
    """``from_pretrained`` arguments from the load options, every value checked (no import needed).

    ``dtype`` stays a name and ``quantization_config`` the checked bitsandbytes settings
    (:func:`bitsandbytes_settings`): :func:`load_model` turns them into torch and transformers objects. Remote code and pickle weights are off unless
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
    check_remote_code(model, kwargs["trust_remote_code"])
    if model.format == "gguf":
        kwargs["gguf_file"] = model.path.name
    if model.format == "hf":
        kwargs["use_safetensors"] = None if option_flag("allow_pickle", extra.get("allow_pickle", False)) else True
    if "device_map" in extra:
        kwargs["device_map"] = extra["device_map"]
    elif device == "auto":
        kwargs["device_map"] = "auto"
    if "attn_implementation" in extra:
        attention = str(extra["attn_implementation"])
        if attention not in ATTN_IMPLEMENTATIONS:
            raise InvalidOptionError(
                f"unknown attn_implementation {attention!r}", f"choose one of: {', '.join(ATTN_IMPLEMENTATIONS)}"
            )
        kwargs["attn_implementation"] = attention
    quantization = bitsandbytes_settings(extra)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs.setdefault("device_map", "auto" if device in ("auto", "cpu") else device)
    return kwargs


def load_model(
    runtime: tuple[Any, Any], model: ModelRef, kwargs: dict[str, Any], family: ModelFamily = "causal"
) -> tuple[Any, Any]:
    """The tokenizer (a vision model's processor) and the model of ``family``, loaded quietly;
    failures become one-line errors with a hint."""
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
            if family == "vision":  # the processor: image processor + tokenizer (+ chat template)
                tokenizer = transformers.AutoProcessor.from_pretrained(source, **shared)
            else:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, **shared)
            return tokenizer, auto_class(transformers, family).from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = "check the folder holds a complete model"
        if "safetensors" in message.lower() and kwargs.get("use_safetensors"):
            hint = "this folder has only pickle weights; pass -o allow_pickle=true if you trust it"
        raise InvalidModelError(f"transformers could not load {model.name}: {message}", hint) from None


REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
"""The files whose ``auto_map`` points transformers at Python code shipped in the model folder."""


def check_remote_code(model: ModelRef, trusted: bool) -> None:
    """Refuse a model that ships its own code (Janus-Pro, MiniCPM-o: an ``auto_map`` in its config)
    unless ``-o trust_remote_code=true``, before anything loads.

    transformers would refuse too, but only after resolving files, and in a paragraph; this says
    in one line which file asks for code and how to opt in.
    """
    if trusted or model.format != "hf":
        return
    import json

    for name in REMOTE_CODE_FILES:
        path = model.folder / name
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError):
            continue  # a broken file is the loader's to report
        if isinstance(data, dict) and data.get("auto_map"):
            raise InvalidOptionError(
                f"{model.name} runs its own Python code ({name} has an auto_map), which llmbench loads only on request",
                "read the folder's .py files; if you trust them, add -o trust_remote_code=true",
            )


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
