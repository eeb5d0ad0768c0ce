"""The memory plan: every term named, with its formula, so an estimate can be checked.

A plan is a sum of terms (bytes):

``process``
    The process before the model loads: Python, llmbench and the backend's libraries (torch and
    transformers weigh far more than llama.cpp). Taken from a stored run's ``rss_before_load``
    when one exists for the backend on this machine, else a documented default
    (:data:`PROCESS_BASELINE`). On a GPU this term is host memory and is left out.
``weights``
    GGUF on llama.cpp: the exact bytes of the file's tensors. Otherwise parameters x bytes per
    weight: 4 (float32), 2 (float16/bfloat16), bnb int8 = 1 byte for linear weights with the
    embeddings kept in 16 bits, bnb int4 (NF4) = 4 bits plus one 32-bit scale per 64 weights
    (4.5 bits) for linear weights, GGUF quant types by their block layout
    (:func:`bits_per_weight`). transformers de-quantizes a GGUF to the chosen dtype.
``kv_cache``
    ``2 x layers x kv_heads x head_dim x bytes(kv dtype) x tokens x batch``. llama.cpp commits the
    whole ``n_ctx`` at load (f16 by default); transformers' cache grows with the tokens held.
``cross_kv``
    Seq2seq models only (:func:`seq2seq_kv_terms`): the decoder's keys and values of the encoder
    output, fixed at the encoder's length; their ``kv_cache`` is the decoder's self-attention.
``runtime``
    The backend's own buffers that do not scale with context: llama.cpp's vocabulary tables and
    output buffer (8 MiB + 300 bytes per vocabulary entry); transformers' tokenizer, torch's
    allocator caches and module objects (64 MiB + 1100 bytes per vocabulary entry).
``loader``
    Memory only loading needs, for transformers: a GGUF file is read through a memory map (+ its
    tensor bytes) and de-quantized tensor by tensor (+ the largest tensor at the load dtype);
    safetensors stored in another dtype than the load dtype are read through the memory-mapped
    file and converted (+ the file's bytes). Safetensors loaded in their own dtype are used in
    place and cost nothing extra.
``activations``
    Prefill work space for one micro-batch ``u = min(prompt, n_ubatch)``:
    ``u x (4 x hidden + 3 x intermediate) x 4`` bytes plus the attention scores
    ``1.5 x u x context x heads x 4`` bytes (llama.cpp's scheduler keeps a softmax copy; the
    transformers math path is the same order).
``logits``
    ``batch x vocab x 4`` bytes for generation (one row per sequence); for scoring every position
    keeps its row: ``batch x tokens x vocab x 4``.

The constants in ``runtime`` and the defaults in ``process`` were measured with ``llmbench run``
on SmolLM2-135M (CPU, Linux, Python 3.11); ``benchmarks/plan_accuracy.py`` re-measures the error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llmbench.errors import InvalidOptionError
from llmbench.models import ModelSpec, ParameterCount, Seq2SeqSpec

MiB = 1 << 20
PROCESS_BASELINE = {"llama.cpp": 60 * MiB, "transformers": 260 * MiB}
"""Resident memory of the process before the model loads, when no stored run says otherwise."""

DTYPE_BYTES = {"float32": 4.0, "fp32": 4.0, "float16": 2.0, "fp16": 2.0, "bfloat16": 2.0, "bf16": 2.0}
BNB_BITS = {"int8": 8.0, "bnb-8bit": 8.0, "int4": 4.5, "nf4": 4.5, "bnb-4bit": 4.5}
Purpose = Literal["generate", "score"]


def bits_per_weight(quant_type: str) -> float:
    """Bits per weight of a GGML quantization type, from its block layout (bytes x 8 / block size)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        qtype = GGMLQuantizationType[quant_type.upper()]
    except KeyError:
        valid = ", ".join(t.name for t in GGML_QUANT_SIZES)
        raise InvalidOptionError(f"unknown GGUF quantization type {quant_type!r}", f"choose one of: {valid}") from None
    block, type_bytes = GGML_QUANT_SIZES[qtype]
    return type_bytes * 8 / block


@dataclass(frozen=True)
class PlanRequest:
    backend: str
    """``llama.cpp`` or ``transformers``."""
    context: int
    """Tokens the KV cache holds (llama.cpp: its n_ctx, committed at load)."""
    prompt: int | None = None
    """Prompt length for the prefill work space (default: min(context, 512))."""
    batch: int = 1
    dtype: str | None = None
    """Weights: float32/float16/bfloat16/int8/int4 or a GGUF type (Q4_K, Q8_0 ...). Default: as stored."""
    kv_dtype: str | None = None
    """KV cache: f16 (llama.cpp default), float32, bfloat16 ... Default: the backend's."""
    purpose: Purpose = "generate"
    device: Literal["cpu", "gpu"] = "cpu"
    device_bytes: int | None = None
    """Memory the device offers; default: this machine's RAM (CPU) or first GPU."""
    process_baseline: int | None = None
    """Override of the ``process`` term (e.g. a measured rss_before_load)."""
    n_ubatch: int = 512


@dataclass(frozen=True)
class PlanTerm:
    name: str
    bytes: int
    formula: str


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    request: PlanRequest
    weights_format: str
    terms: tuple[PlanTerm, ...]
    device_bytes: int | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(term.bytes for term in self.terms)

    @property
    def fits(self) -> bool | None:
        return None if self.device_bytes is None else self.total <= self.device_bytes

    def term(self, name: str) -> int:
        return sum(term.bytes for term in self.terms if term.name == name)

    def kv_bytes_per_token(self) -> float:
        tokens = self.request.context * self.request.batch
        return self.term("kv_cache") / tokens if tokens else 0.0


def _require(spec: ModelSpec, *names: str) -> None:
    missing = [name for name in names if getattr(spec, name) in (None, 0)]
    if missing:
        raise InvalidOptionError(
            f"{spec.name} does not state {', '.join(missing)}, which the memory plan needs",
            "inspect it with: llmbench inspect MODEL",
        )


def checkpoint_weights(spec: ModelSpec, params: ParameterCount) -> tuple[int, str, str] | None:
    """Weight bytes of a GPTQ or AWQ checkpoint (its config.json's ``quantization_config``), None
    for any other model.

    Linear weights are stored at ``bits`` each, plus per group of ``group_size`` weights one fp16
    scale and one packed zero point (``bits``): ``bits / 8 + (2 + bits / 8) / group_size`` bytes
    per weight (``group_size`` -1, one group per input row, is counted as the hidden size).
    Embeddings, the output head and norms stay in 16 bits.
    """
    quantization = spec.quantization if isinstance(spec.quantization, dict) else {}
    method = str(quantization.get("quant_method", "")).lower()
    if method not in ("gptq", "awq"):
        return None
    bits = quantization.get("bits", quantization.get("w_bit", 4))
    group = quantization.get("group_size", quantization.get("q_group_size", 128))
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 16:
        raise InvalidOptionError(f"{spec.name}: quantization_config bits is {bits!r}", "repair config.json")
    if not isinstance(group, int) or isinstance(group, bool) or group == 0 or group < -1:
        raise InvalidOptionError(f"{spec.name}: quantization_config group_size is {group!r}", "repair config.json")
    group_size = (spec.hidden_size or 1) if group == -1 else group
    per_weight = bits / 8 + (2 + bits / 8) / group_size
    linear, other = params.non_embedding, params.embedding
    return (
        int(linear * per_weight + other * 2),
        f"{method}-{bits}bit",
        f"{linear:,} linear weights x ({bits} bits + (16 + {bits}) bits / group of {group_size})"
        f" + {other:,} embedding weights x 2 bytes",
    )


def _weights(spec: ModelSpec, params: ParameterCount, request: PlanRequest) -> tuple[int, str, str]:
    dtype = request.dtype
    if dtype is None and (quantized := checkpoint_weights(spec, params)) is not None:
        return quantized
    if dtype is None:
        if spec.source == "gguf" and request.backend == "llama.cpp":
            from llmbench.models import read_gguf_header

            exact = sum(t.n_bytes for t in read_gguf_header(spec.path).tensors)
            return exact, str(spec.dtype or "gguf"), "exact bytes of the GGUF tensors"
        dtype = "float32" if spec.source == "gguf" else (spec.dtype or "float32")
    key = dtype.lower()
    if key in DTYPE_BYTES:
        return int(params.total * DTYPE_BYTES[key]), key, f"{params.total:,} parameters x {DTYPE_BYTES[key]:g} bytes"
    if key in BNB_BITS:
        linear = params.non_embedding
        return (
            int(linear * BNB_BITS[key] / 8 + params.embedding * 2),
            key,
            f"{linear:,} linear weights x {BNB_BITS[key]:g} bits + {params.embedding:,} embedding weights x 2 bytes",
        )
    bpw = bits_per_weight(dtype)
    return int(params.total * bpw / 8), dtype.upper(), f"{params.total:,} parameters x {bpw:g} bits ({dtype.upper()})"


def _kv_bytes(request: PlanRequest, weights_format: str) -> tuple[float, str]:
    kv = request.kv_dtype
    if kv is None:
        default = weights_format if weights_format in DTYPE_BYTES else "float16"
        kv = "f16" if request.backend == "llama.cpp" else default
    key = kv.lower()
    table = {**DTYPE_BYTES, "f32": 4.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
    if key not in table:
        raise InvalidOptionError(f"unknown KV-cache dtype {kv!r}", f"choose one of: {', '.join(sorted(table))}")
    return table[key], key


def plan_memory(
    spec: ModelSpec, params: ParameterCount, request: PlanRequest, process_baseline_source: str | None = None
) -> MemoryPlan:
    """The memory plan of ``spec`` for ``request`` (see the module's documentation for each term)."""
    _require(spec, "num_layers", "num_kv_heads", "head_dim", "vocab_size", "hidden_size")
    if request.context < 1 or request.batch < 1:
        raise InvalidOptionError("context and batch must be at least 1", "use --context N --batch B")
    if request.backend not in PROCESS_BASELINE:
        raise InvalidOptionError(
            f"no memory model for backend {request.backend!r}", "choose --backend llama.cpp or transformers"
        )
    layers, kv_heads, head_dim = spec.num_layers or 0, spec.num_kv_heads or 0, spec.head_dim or 0
    vocab, hidden = spec.vocab_size or 0, spec.hidden_size or 0
    intermediate = spec.intermediate_size or 4 * hidden
    heads = spec.num_heads or kv_heads
    terms: list[PlanTerm] = []
    notes: list[str] = []
    if request.device == "cpu":
        baseline = request.process_baseline or PROCESS_BASELINE[request.backend]
        source = process_baseline_source or "default for this backend"
        terms.append(PlanTerm("process", baseline, f"Python + libraries before loading ({source})"))
    weights, weights_format, formula = _weights(spec, params, request)
    terms.append(PlanTerm("weights", weights, formula))
    kv_size, kv_name = _kv_bytes(request, weights_format)
    per_token = 2 * layers * kv_heads * head_dim * kv_size
    tokens = request.context * request.batch
    terms.append(
        PlanTerm(
            "kv_cache",
            int(per_token * tokens),
            f"2 x {layers} layers x {kv_heads} KV heads x {head_dim} head dim x {kv_size:g} bytes ({kv_name})"
            f" x {request.context:,} tokens x batch {request.batch}",
        )
    )
    if request.backend == "llama.cpp":
        runtime = 8 * MiB + 300 * vocab
        terms.append(PlanTerm("runtime", runtime, f"llama.cpp tables: 8 MiB + 300 B x {vocab:,} vocabulary"))
    else:
        runtime = 64 * MiB + 1100 * vocab
        terms.append(
            PlanTerm("runtime", runtime, f"tokenizer, allocator and modules: 64 MiB + 1100 B x {vocab:,} vocabulary")
        )
        loader = _loader_transient(spec, params, weights_format, weights)
        if loader:
            terms.append(loader)
    prompt = request.prompt if request.prompt is not None else min(request.context, 512)
    ubatch = min(prompt, request.n_ubatch) * request.batch
    activations = ubatch * (4 * hidden + 3 * intermediate) * 4 + 1.5 * ubatch * min(prompt, request.context) * heads * 4
    terms.append(
        PlanTerm(
            "activations",
            int(activations),
            f"{ubatch} tokens x (4 x {hidden} + 3 x {intermediate}) x 4 B"
            f" + 1.5 x {ubatch} x {prompt} x {heads} heads x 4 B",
        )
    )
    positions = tokens if request.purpose == "score" else request.batch
    terms.append(PlanTerm("logits", positions * vocab * 4, f"{positions:,} rows x {vocab:,} vocabulary x 4 B"))
    if spec.seq2seq is not None:
        terms = seq2seq_kv_terms(terms, spec.seq2seq, request, kv_size, kv_name)
    if request.device == "gpu":
        notes.append("GPU plan: the process term (host memory) is left out; CUDA context adds ~300-500 MiB")
    return MemoryPlan(spec.name, request, weights_format, tuple(terms), request.device_bytes, tuple(notes))


def _loader_transient(spec: ModelSpec, params: ParameterCount, weights_format: str, weights: int) -> PlanTerm | None:
    if spec.source == "gguf":
        from llmbench.models import read_gguf_header

        tensors = read_gguf_header(spec.path).tensors
        file_bytes = sum(t.n_bytes for t in tensors)
        largest = max((t.n_elements for t in tensors), default=0)
        element = DTYPE_BYTES.get(weights_format, 4.0)
        return PlanTerm(
            "loader",
            int(file_bytes + largest * element),
            f"the mapped GGUF ({file_bytes:,} B) + the largest tensor de-quantized ({largest:,} x {element:g} B)",
        )
    stored = (spec.dtype or "").lower()
    if stored in DTYPE_BYTES and weights_format in DTYPE_BYTES and stored != weights_format:
        file_bytes = int(params.total * DTYPE_BYTES[stored])
        return PlanTerm("loader", file_bytes, f"the {stored} safetensors read while converting to {weights_format}")
    return None


def seq2seq_tokens(request: PlanRequest) -> tuple[int, int]:
    """An encoder-decoder plan's (encoder tokens, decoder tokens): ``--prompt`` tokens go to the
    encoder (default: half the context, at most 512) and the rest of ``--context`` is generated,
    as a stored run's context is its prompt plus its new tokens."""
    encoder = request.prompt if request.prompt is not None else min(request.context // 2, 512)
    encoder = max(1, min(encoder, request.context))
    return encoder, max(1, request.context - encoder)


def seq2seq_kv_terms(
    terms: list[PlanTerm], stacks: Seq2SeqSpec, request: PlanRequest, kv_size: float, kv_name: str
) -> list[PlanTerm]:
    """``terms`` with the decoder-only KV term replaced by an encoder-decoder's two caches.

    ``kv_cache``: the decoder's self-attention, which grows with the generated tokens:
    ``2 x decoder layers x heads x head dim x bytes x decoder tokens x batch``. ``cross_kv``: every
    decoder layer's keys and values of the encoder output, computed once and fixed at the encoder's
    length: ``decoder layers x 2 x heads x head dim x bytes x encoder tokens x batch``. The encoder
    itself keeps no cache.
    """
    encoder, decoder = seq2seq_tokens(request)
    layers, heads, head_dim, batch = stacks.decoder_layers, stacks.decoder_heads, stacks.decoder_head_dim, request.batch
    per_token = 2 * layers * heads * head_dim * kv_size
    shape = f"{layers} decoder layers x {heads} heads x {head_dim} head dim x {kv_size:g} bytes ({kv_name})"
    self_kv = PlanTerm(
        "kv_cache", int(per_token * decoder * batch), f"2 x {shape} x {decoder:,} decoder tokens x batch {batch}"
    )
    cross_kv = PlanTerm(
        "cross_kv",
        int(per_token * encoder * batch),
        f"cross-attention: 2 x {shape} x {encoder:,} encoder tokens x batch {batch}",
    )
    replaced: list[PlanTerm] = []
    for term in terms:
        replaced += [self_kv, cross_kv] if term.name == "kv_cache" else [term]
    return replaced
