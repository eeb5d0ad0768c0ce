"""The KV-cache element types llama.cpp takes, once: GGML type code and bytes per element.

``backends.llama_cpp`` turns ``-o type_k=q8_0`` into the code; the roofline and plans read the
bytes (a block type stores ``block bytes / 32`` per element).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KVCacheType:
    code: int
    """The GGML type code (``ggml_type``)."""
    bytes_per_element: float
    quantized: bool


KV_CACHE_TYPES: dict[str, KVCacheType] = {
    "f32": KVCacheType(0, 4.0, False),
    "f16": KVCacheType(1, 2.0, False),
    "bf16": KVCacheType(30, 2.0, False),
    "q8_0": KVCacheType(8, 34 / 32, True),
    "q4_0": KVCacheType(2, 18 / 32, True),
    "q4_1": KVCacheType(3, 20 / 32, True),
    "q5_0": KVCacheType(6, 22 / 32, True),
    "q5_1": KVCacheType(7, 24 / 32, True),
    "iq4_nl": KVCacheType(20, 18 / 32, True),
}
