"""Request bodies of the OpenAI-compatible and TGI APIs: the one place they are written.

The ``openai`` backend (one request at a time, httpx) and the load client (aiohttp) both build
their bodies here, so a setting means the same on both: greedy unless told, a fixed seed where
given, streamed with ``stream_options.include_usage`` (so the server's own token counts come
back), and ``ignore_eos`` to ask for exactly ``max_tokens`` tokens (vLLM and llama.cpp honour it;
OpenAI, TGI's Messages API, Ollama and llama-cpp-python ignore it, which is why the backend reports
the count the server produced rather than the one asked for).

Prompts go as text unless the caller asks for token ids (``prompt_format="ids"``): only some
servers take ids (vLLM, llama.cpp's ``llama-server``); llama-cpp-python's server, Ollama and
OpenAI refuse them. A text prompt of an exact length is made by
:func:`llmbench.transport.calibrate_prompt`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from llmbench.errors import InvalidOptionError

Endpoint = Literal["completions", "chat"]
PromptFormat = Literal["text", "ids"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = ("text", "ids")
Message = Mapping[str, str]


@dataclass(frozen=True)
class Sampling:
    """What a body says about generation."""

    max_tokens: int
    temperature: float = 0.0
    """0 is greedy."""
    top_p: float | None = None
    top_k: int = 0
    """0: no top-k cut (the field is left out)."""
    seed: int | None = None
    ignore_eos: bool = True
    """Ask for exactly ``max_tokens`` tokens (end-of-sequence ignored) where the server allows it."""


def prompt_format(value: object) -> PromptFormat:
    """``text`` or ``ids``, checked (a user's ``-o prompt_format=...`` or a load setting)."""
    text = str(value).lower()
    if text not in PROMPT_FORMATS:
        raise InvalidOptionError(
            f"prompt_format must be text or ids, got {value!r}",
            "use text (any server) or ids (servers that take token ids: vLLM, llama-server)",
        )
    return text


def openai_body(
    prompt: str | Sequence[int] | None,
    sampling: Sampling,
    *,
    endpoint: Endpoint = "completions",
    model: str | None = None,
    messages: Sequence[Message] | None = None,
    stream: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of ``/v1/completions`` (``prompt``: text or ids) or ``/v1/chat/completions``.

    For chat, ``messages`` (or the text ``prompt`` as one user message). ``extra`` fields are
    added last and win (``-o``-style settings a server understands, like llama.cpp's ``cache_prompt``).
    """
    body: dict[str, Any] = {"max_tokens": sampling.max_tokens, "temperature": sampling.temperature, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if sampling.top_p is not None:
        body["top_p"] = sampling.top_p
    if sampling.top_k:
        body["top_k"] = sampling.top_k
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.ignore_eos:
        body["ignore_eos"] = True
    if model:
        body["model"] = model
    if endpoint == "chat":
        if messages is None:
            if not isinstance(prompt, str):
                raise InvalidOptionError("a chat request needs a text prompt or messages, not token ids")
            messages = [{"role": "user", "content": prompt}]
        body["messages"] = [dict(message) for message in messages]
    else:
        body["prompt"] = prompt if isinstance(prompt, str) or prompt is None else list(prompt)
    if extra:
        body.update(extra)
    return body


def count_body(text: str, *, endpoint: Endpoint = "completions", model: str | None = None) -> dict[str, Any]:
    """A one-token, unstreamed request whose reply's ``usage.prompt_tokens`` counts ``text`` as the server does."""
    return openai_body(text, Sampling(max_tokens=1, ignore_eos=False), endpoint=endpoint, model=model, stream=False)


def tgi_body(prompt: str, max_new_tokens: int, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Text Generation Inference's native ``/generate`` and ``/generate_stream`` (text prompts only)."""
    parameters = {"max_new_tokens": max_new_tokens, "do_sample": False, "details": True, **(extra or {})}
    return {"inputs": prompt, "parameters": parameters}


def encode(body: Mapping[str, Any]) -> bytes:
    """The JSON bytes of a body (encoded once, before a load step's clock starts)."""
    return orjson.dumps(body)


def usage_prompt_tokens(reply: Any) -> int | None:
    """``usage.prompt_tokens`` of a reply, when it has one."""
    usage = reply.get("usage") if isinstance(reply, dict) else None
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
