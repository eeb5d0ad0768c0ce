"""Any OpenAI-compatible server as a backend: vLLM ``serve``, llama.cpp's server, Ollama, TGI's Messages API.

``llmbench run http://127.0.0.1:8080 -o model=NAME`` measures one request at a time exactly as
``llmbench run`` measures a local model: the same repetitions, warm-up and metric definitions.
Each read of the response stream is stamped when it arrives; after the response the stream is
parsed by :func:`llmbench.serving.parse_openai_stream` (the load tester's parser), and a read or
event that carried several tokens shares the gap before it among them
(:func:`llmbench.measurement.metrics.chunk_token_times`). Token counts come from the server's
``usage`` (``stream_options.include_usage``).

Prompts go as token ids when they are ids (vLLM and llama.cpp accept them), as text otherwise.
Tokenization uses the server's ``/tokenize`` and ``/detokenize`` (llama.cpp and vLLM have them) or,
with ``-o tokenizer=PATH``, the model's tokenizer from a local GGUF file or HF folder. Prefix
caching is off unless ``-o cache_prompt=true``, so every repetition pays its prefill. The API key is
read from the environment variable named by ``-o api_key_env=VAR`` and never stored. Peak memory
recorded with such a run is the client's, not the server's.

Server-side token ids are not part of the OpenAI stream: a generation's ``token_ids`` holds ``-1``
for each token, its ``text`` is the server's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from llmbench.backends.base import Backend, FinishReason, Generation, GenerationConfig, LoadOptions, Message
from llmbench.errors import BackendUnavailableError, InvalidOptionError, ServerError
from llmbench.models import ModelRef

UNKNOWN_TOKEN_ID = -1
_STALE_RETRIES = 3


class OpenAIBackend(Backend):
    """A model behind an OpenAI-compatible ``/v1/completions`` and ``/v1/chat/completions``."""

    name = "openai"
    formats = frozenset({"server"})
    can_stream = True
    can_chat = True
    known_options: ClassVar[frozenset[str] | None] = frozenset(
        {"model", "api_key_env", "tokenizer", "timeout_s", "cache_prompt"}
    )

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        import httpx

        from llmbench.serving._targets import api_key_from

        extra = options.extra
        unknown = set(extra) - (self.known_options or set())
        if unknown:
            raise InvalidOptionError(
                f"unknown option(s) for the openai backend: {', '.join(sorted(unknown))}",
                f"known: {', '.join(sorted(self.known_options or ()))}",
            )
        self.root = (model.url or "").rstrip("/").removesuffix("/v1")
        headers = {}
        api_key = api_key_from(extra.get("api_key_env"))
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = float(extra.get("timeout_s", 600.0))
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), headers=headers)
        self.cache_prompt = str(extra.get("cache_prompt", "false")).lower() in ("1", "true", "yes", "on")
        self.served_model = str(extra["model"]) if extra.get("model") else self._served_model()
        self.local_tokenizer = None
        if extra.get("tokenizer"):
            from llmbench.models._tokens import load_tokenizer

            self.local_tokenizer = load_tokenizer(str(extra["tokenizer"]))

    @classmethod
    def check_available(cls) -> None:
        try:
            import httpx  # noqa: F401
        except ImportError:
            raise BackendUnavailableError("the openai backend needs httpx", "pip install httpx") from None

    @classmethod
    def library_versions(cls) -> dict[str, str]:
        from importlib import metadata

        return {"httpx": metadata.version("httpx")}

    # -- HTTP ------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None, stream: bool) -> Any:
        """One request; sent again (up to 3 times) when it met a keep-alive connection the server had closed."""
        import httpx

        request = self.client.build_request(method, self.root + path, json=body)
        for _ in range(_STALE_RETRIES):
            try:
                return self.client.send(request, stream=stream)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                continue
        return self.client.send(request, stream=stream)

    def _check_status(self, response: Any, method: str, path: str) -> None:
        if response.status_code != 200:
            detail = response.read().decode("utf-8", "replace").strip()[:300]
            raise ServerError(
                f"{method} {path} returned HTTP {response.status_code}: {detail}",
                "check the model name (-o model=...) and the server's log",
            )

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        import httpx

        try:
            response = self._send(method, path, body, stream=False)
        except httpx.HTTPError as exc:
            raise ServerError(
                f"cannot reach {self.root} ({type(exc).__name__}: {exc})",
                "start the server, or check the URL: llmbench run http://HOST:PORT",
            ) from None
        self._check_status(response, method, path)
        return response.json()

    def _served_model(self) -> str:
        """The server's first model (``GET /v1/models``): also the reachability check at load."""
        listing = self._request("GET", "/v1/models")
        models = listing.get("data") if isinstance(listing, dict) else None
        if not models:
            raise ServerError(f"{self.root}/v1/models lists no model", "pass the model name with -o model=NAME")
        return str(models[0].get("id"))

    @contextmanager
    def _streaming(self, path: str, body: Mapping[str, Any]) -> Iterator[Iterator[bytes]]:
        """The raw reads of a streamed POST; HTTP errors become one-line :class:`ServerError`s."""
        import httpx

        try:
            response = self._send("POST", path, body, stream=True)
            try:
                self._check_status(response, "POST", path)
                yield response.iter_raw()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise ServerError(
                f"the stream from {self.root} failed ({type(exc).__name__}: {exc})",
                "start the server or check the URL and the server's log",
            ) from None

    # -- tokenization ----------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if self.local_tokenizer is not None:
            return self.local_tokenizer.tokenize(text, add_special_tokens=add_special_tokens)
        # One body both servers read: llama.cpp takes content/add_special, vLLM prompt/add_special_tokens.
        body = {
            "model": self.served_model,
            "content": text,
            "prompt": text,
            "add_special": add_special_tokens,
            "add_special_tokens": add_special_tokens,
        }
        result = self._tokenizer_call("/tokenize", body)
        return [int(t if not isinstance(t, dict) else t["id"]) for t in result["tokens"]]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        if self.local_tokenizer is not None:
            return self.local_tokenizer.detokenize(token_ids)
        result = self._tokenizer_call("/detokenize", {"model": self.served_model, "tokens": list(token_ids)})
        return str(result.get("content", result.get("prompt", "")))

    def _tokenizer_call(self, path: str, body: Mapping[str, Any]) -> Any:
        try:
            return self._request("POST", path, body)
        except ServerError as exc:
            raise ServerError(
                f"the server cannot tokenize ({exc.message})",
                "pass the model's tokenizer with -o tokenizer=PATH (a GGUF file or HF folder), "
                "or a text prompt with --prompt",
            ) from None

    def apply_chat_template(self, messages: Sequence[Message]) -> list[int]:
        """The server's own template: llama.cpp's ``/apply-template``, or vLLM's ``/tokenize`` with messages."""
        try:
            rendered = self._request("POST", "/apply-template", {"messages": [dict(m) for m in messages]})
            return self.tokenize(str(rendered["prompt"]), add_special_tokens=False)
        except ServerError:
            pass
        try:
            body = {"model": self.served_model, "messages": [dict(m) for m in messages], "add_generation_prompt": True}
            ids = [int(t) for t in self._request("POST", "/tokenize", body).get("tokens") or []]
        except ServerError:
            ids = []
        if not ids:
            raise ServerError(
                "the server cannot render its chat template into tokens",
                "measure chat through the server with `llmbench load URL --endpoint chat`, or drop --chat",
            )
        return ids

    # -- generation ------------------------------------------------------------------------------

    def _body(self, config: GenerationConfig) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.served_model,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "seed": config.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
            "cache_prompt": self.cache_prompt,  # llama.cpp: no prefix cache across repetitions
        }
        if config.top_k:
            body["top_k"] = config.top_k
        if config.force_new_tokens:
            body["ignore_eos"] = True  # vLLM and llama.cpp generate exactly max_tokens
        return body

    def _timed(self, path: str, body: dict[str, Any], prompt_tokens: int | None) -> Generation:
        from llmbench.measurement.metrics import chunk_token_times
        from llmbench.serving._stream import MalformedStream, parse_openai_stream

        reads: list[tuple[float, bytes]] = []
        clock = time.perf_counter
        t_start = clock()
        with self._streaming(path, body) as chunks:
            for chunk in chunks:
                reads.append((clock(), chunk))
        t_end = clock()
        try:
            parsed = parse_openai_stream(reads, need_text=True)
        except MalformedStream as exc:
            raise ServerError(f"the server's stream is malformed: {exc}", "check the server's log") from None
        if parsed.error is not None:
            raise ServerError(f"the server reported an error: {parsed.error}", "check the server's log")
        times = chunk_token_times(parsed.chunk_times, parsed.chunk_tokens)
        finish: FinishReason = "stop" if parsed.finish_reason == "stop" else "length"
        return Generation(
            text=parsed.text,
            token_ids=[UNKNOWN_TOKEN_ID] * len(times),
            prompt_tokens=parsed.prompt_tokens if parsed.prompt_tokens is not None else (prompt_tokens or 0),
            t_start=t_start,
            token_times=times,
            t_end=t_end,
            finish_reason=finish,
        )

    def generate(self, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> Generation:
        """One streamed completion; every token timestamped from the read that brought it."""
        config = config or GenerationConfig()
        ids = None if isinstance(prompt, str) else list(prompt)
        if (ids is not None and not ids) or prompt == "":
            raise InvalidOptionError("the prompt is empty", "pass a non-empty prompt")
        body = self._body(config) | {"prompt": ids if ids is not None else prompt}
        return self._timed("/v1/completions", body, len(ids) if ids is not None else None)

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> Generation:
        """The reply through ``/v1/chat/completions``: the server applies the model's template."""
        body = self._body(config or GenerationConfig()) | {"messages": [dict(m) for m in messages]}
        return self._timed("/v1/chat/completions", body, None)

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        """Calls ``on_token(-1)`` for each token as its event arrives (the stream has no ids)."""
        finish: FinishReason = "length"
        for payload in self._payloads("/v1/completions", self._body(config) | {"prompt": list(prompt_ids)}):
            for choice in payload.get("choices") or []:
                if _choice_text(choice):
                    on_token(UNKNOWN_TOKEN_ID)
                if choice.get("finish_reason"):
                    finish = "stop" if choice["finish_reason"] == "stop" else "length"
        return finish

    def stream(self, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> Iterator[str]:
        """The text as the server sends it."""
        body = self._body(config or GenerationConfig()) | {
            "prompt": prompt if isinstance(prompt, str) else list(prompt)
        }
        yield from self._texts("/v1/completions", body)

    def _texts(self, path: str, body: dict[str, Any]) -> Iterator[str]:
        for payload in self._payloads(path, body):
            for choice in payload.get("choices") or []:
                text = _choice_text(choice)
                if text:
                    yield text

    def _payloads(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Events of the stream, parsed as they arrive (for display: measurement parses after)."""
        import json

        from llmbench.serving._stream import SSEBuffer

        buffer = SSEBuffer()
        with self._streaming(path, body) as chunks:
            for chunk in chunks:
                for data in buffer.feed(chunk):
                    if data.strip() == "[DONE]":
                        return
                    try:
                        payload = json.loads(data)
                    except json.JSONDecodeError:
                        raise ServerError(f"the server's stream is malformed: {data[:80]!r}") from None
                    if isinstance(payload, dict) and "error" in payload:
                        raise ServerError(f"the server reported an error: {payload['error']}")
                    if isinstance(payload, dict):
                        yield payload

    def close(self) -> None:
        self.client.close()


def _choice_text(choice: Mapping[str, Any]) -> str:
    """The text of a completions choice (``text``) or a chat one (``delta.content``)."""
    text = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
    return str(text) if text else ""
