"""Re-save a GGUF model as a Hugging Face folder (safetensors), through transformers.

transformers de-quantizes the GGUF when loading it with ``gguf_file=``, but marks the result as
"quantized with gguf" and refuses to ``save_pretrained`` it; the weights are therefore copied into
a plain model built from the same config, which saves normally.
"""

from __future__ import annotations

from pathlib import Path

from llmbench.errors import missing_extra


def export_gguf_as_hf(gguf_path: str | Path, folder: str | Path, dtype: str = "float32") -> Path:
    """Write ``gguf_path`` as a safetensors model folder with its tokenizer; return the folder."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise missing_extra(exc.name or "transformers", "hf") from None
    gguf_path = Path(gguf_path)
    folder = Path(folder)
    torch_dtype = getattr(torch, dtype)
    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch_dtype, **kwargs)
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    plain = type(loaded)(type(loaded.config).from_dict(settings)).to(torch_dtype)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
