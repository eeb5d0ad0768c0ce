"""Any OpenAI-compatible server as a backend: vLLM ``serve``, llama.cpp's server, llama-cpp-python, Ollama, TGI.

``llmbench run http://127.0.0.1:8080 -o model=NAME`` measures one request at a time exactly as
``llmbench run`` measures a local model: the same repetitions, warm-up and metric definitions.
Each read of the response stream is stamped when it arrives; after the response the stream is
parsed by :func:`llmbench.transport.parse_openai_stream` (the load tester's parser), and a read or
event that carried several tokens shares the gap before it among them
(:func:`llmbench.measurement.metrics.chunk_token_times`). Token counts come from the server's
``usage`` (``stream_options.include_usage``); bodies, credentials and resends are
:mod:`llmbench.transport`'s, shared with the load client.

Prompts go as text (``-o prompt_format=text``, the default: every server takes it). A prompt given
as token ids (the synthetic prompt of exactly ``-p`` tokens) is sent as the text of those ids,
calibrated until the server's ``usage.prompt_tokens`` is that length
(:func:`llmbench.transport.calibrate_prompt`); a prompt the backend tokenized from a text is sent
as that text. ``-o prompt_format=ids`` sends the ids themselves, for servers that take them (vLLM,
llama.cpp's ``llama-server``). :attr:`OpenAIBackend.prompt_notes` says which was used and what the
server counted. Tokenization uses the server's ``/tokenize`` and ``/detokenize`` (llama.cpp, vLLM;
llama-cpp-python's ``/extras/tokenize``) or, with ``-o tokenizer=PATH``, the model's tokenizer
from a local GGUF file or HF folder.

Prefix caching is off unless ``-o cache_prompt=true`` (llama.cpp), so every repetition pays its
prefill. The API key is read from the environment variable named by ``-o api_key_env=VAR``, or
taken from the URL (``http://user:password@host`` is Basic authentication, ``http://KEY@host`` or
``?api_key=KEY`` a bearer key), never stored and taken out of any error shown. A request the server
may have seen is not sent again unless ``-o retries=N``. Connections are reused unless the
server closes them after each response without saying so (llama-server does; one request at load
finds out, ``-o keepalive=true|false`` skips it): then each request gets a new one. Peak memory
recorded with such a run is the client's, not the server's.

What the server produced is what is reported: servers that ignore ``ignore_eos`` (OpenAI, Ollama,
TGI, llama-cpp-python) may stop before ``max_new_tokens``; the generation then has the server's
count and ``finish_reason``. Server-side token ids are not part of the OpenAI stream: a
generation's ``token_ids`` holds ``-1`` for each token, its ``text`` is the server's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from llmbench.backends.base import (
    Backend,
    FinishReason,
    Generation,
    GenerationConfig,
    LoadOptions,
    Message,
    option_flag,
)
from llmbench.errors import BackendUnavailableError, InvalidOptionError, ServerError
from llmbench.models import ModelRef, load_tokenizer
from llmbench.transport import (
    CalibratedPrompt,
    MalformedStream,
    Sampling,
    SSEBuffer,
    SyncClient,
    api_key_from,
    as_credential,
    calibrate_prompt,
    check_retries,
    closes_after_response,
    encode,
    join_url,
    openai_body,
    parse_openai_stream,
    prompt_format,
    split_credentials,
)

UNKNOWN_TOKEN_ID = -1
_IDS_REFUSED = "the server may not take token ids: drop -o prompt_format=ids (text is the default)"
_REMEMBERED_TEXTS = 64
"""Texts kept, by their token ids, to send a tokenized prompt as the text it came from."""


class OpenAIBackend(Backend):
    """A model behind an OpenAI-compatible ``/v1/completions`` and ``/v1/chat/completions``."""

    name = "openai"
    formats = frozenset({"server"})
    can_stream = True
    can_chat = True
    known_options: ClassVar[frozenset[str]] = frozenset(
        {"model", "api_key_env", "api_key", "tokenizer", "timeout_s", "cache_prompt", "prompt_format"}
        | {"retries", "keepalive"}
    )

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        extra = options.extra
        url, url_credential = split_credentials(model.url or "")
        # The environment's key wins; then one given by the caller (``api_key``: a key or a
        # Credential taken out of the URL before it was stored); then the URL's own.
        credential = (
            as_credential(api_key_from(extra.get("api_key_env")))
            or as_credential(extra.get("api_key"))
            or url_credential
        )
        self.prompt_format = prompt_format(extra.get("prompt_format", "text"))
        self.cache_prompt = option_flag("cache_prompt", extra.get("cache_prompt", False))
        self.http = SyncClient(
            url,
            credential,
            timeout_s=_seconds(extra.get("timeout_s", 600.0)),
            retries=check_retries(extra.get("retries", 0)),
        )
        self.root = self.http.root
        keepalive = extra.get("keepalive", "auto")
        reuse = None if str(keepalive).lower() == "auto" else option_flag("keepalive", keepalive)
        try:
            self.served_model = str(extra["model"]) if extra.get("model") else self._served_model()
            self.local_tokenizer = load_tokenizer(str(extra["tokenizer"])) if extra.get("tokenizer") else None
            if reuse is None:
                reuse = not self._closes_connections()
        except BaseException:
            self.http.close()
            raise
        if not reuse:
            self.http.stop_reusing_connections()
        self.keepalive = reuse
        """Whether connections are reused (``-o keepalive=auto`` finds out whether the server closes them)."""
        self._tokenizer_paths: dict[str, str] = {}
        self._texts: dict[tuple[int, ...], str] = {}
        self._counts: dict[str, int] = {}
        self._calibrated: dict[tuple[int, ...], CalibratedPrompt] = {}
        self.prompt_notes: dict[str, Any] = {"prompt_format": self.prompt_format}
        """How the last prompt went: ``prompt_format`` (``text`` or ``ids``); for a calibrated text,
        ``server_prompt_tokens``, ``requested_prompt_tokens`` and ``calibration_requests``."""

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

    def _closes_connections(self) -> bool:
        """One streamed one-token request: does the server close the connection after it, unannounced?"""
        body = openai_body("Hello", Sampling(max_tokens=1, ignore_eos=False), model=self.served_model)
        self.http.attempts += 1
        url = join_url(self.root, "/v1/completions")
        return closes_after_response(url, encode(body), self.http.headers, timeout_s=self.http.timeout.read or 60.0)

    @property
    def attempts(self) -> int:
        """Requests sent to the server so far, resends included (see ``http.resends`` for why)."""
        return self.http.attempts

    def _served_model(self) -> str:
        """The server's first model (``GET /v1/models``): also the reachability check at load."""
        listing = self.http.json("GET", "/v1/models")
        models = listing.get("data") if isinstance(listing, dict) else None
        if not models:
            raise ServerError(f"{self.root}/v1/models lists no model", "pass the model name with -o model=NAME")
        return str(models[0].get("id"))

    # -- tokenization ----------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if self.local_tokenizer is not None:
            ids = self.local_tokenizer.tokenize(text, add_special_tokens=add_special_tokens)
        else:
            ids = self._server_tokenize(text, add_special_tokens)
        if len(self._texts) >= _REMEMBERED_TEXTS:
            self._texts.pop(next(iter(self._texts)))
        self._texts[tuple(ids)] = text
        return ids

    def _server_tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        # One body both servers read: llama.cpp takes content/add_special, vLLM prompt/add_special_tokens;
        # llama-cpp-python's /extras/tokenize takes input.
        body = {
            "model": self.served_model,
            "content": text,
            "prompt": text,
            "input": text,
            "add_special": add_special_tokens,
            "add_special_tokens": add_special_tokens,
        }
        result = self._tokenizer_call(("/tokenize", "/extras/tokenize"), body)
        tokens = result.get("tokens") if isinstance(result, dict) else None
        if not isinstance(tokens, list):
            raise _cannot_tokenize(ServerError("the server's /tokenize returned no tokens"))
        return [int(t if not isinstance(t, dict) else t["id"]) for t in tokens]

    def _tokenizer_call(self, paths: tuple[str, str], body: Mapping[str, Any]) -> Any:
        """The first of ``paths`` the server answers (remembered), or a :class:`ServerError` with the fix."""
        known = self._tokenizer_paths.get(paths[0])
        failure: ServerError | None = None
        for path in (known,) if known else paths:
            try:
                result = self.http.json("POST", path, body)
            except ServerError as exc:
                failure = failure or exc
                continue
            self._tokenizer_paths[paths[0]] = path
            return result
        raise _cannot_tokenize(failure or ServerError("no tokenizer endpoint"))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        if self.local_tokenizer is not None:
            return self.local_tokenizer.detokenize(token_ids)
        body = {"model": self.served_model, "tokens": list(token_ids)}
        result = self._tokenizer_call(("/detokenize", "/extras/detokenize"), body)
        if not isinstance(result, dict):
            raise _cannot_tokenize(ServerError("the server's /detokenize returned no text"))
        return str(result.get("content", result.get("text", result.get("prompt", ""))))

    def apply_chat_template(self, messages: Sequence[Message]) -> list[int]:
        """The server's own template: llama.cpp's ``/apply-template``, or vLLM's ``/tokenize`` with messages."""
        try:
            rendered = self.http.json("POST", "/apply-template", {"messages": [dict(m) for m in messages]})
            return self.tokenize(str(rendered["prompt"]), add_special_tokens=False)
        except (ServerError, KeyError, TypeError):
            pass
        try:
            body = {"model": self.served_model, "messages": [dict(m) for m in messages], "add_generation_prompt": True}
            ids = [int(t) for t in self.http.json("POST", "/tokenize", body).get("tokens") or []]
        except (ServerError, AttributeError):
            ids = []
        if not ids:
            raise ServerError(
                "the server cannot render its chat template into tokens",
                "measure chat through the server with `llmbench load URL --endpoint chat`, or drop --chat",
            )
        return ids

    # -- prompts ---------------------------------------------------------------------------------

    def _prompt(self, prompt: str | Sequence[int]) -> tuple[str | list[int], int | None]:
        """What goes in the body's ``prompt``, and its length when known before the server says."""
        if isinstance(prompt, str):
            if not prompt:
                raise InvalidOptionError("the prompt is empty", "pass a non-empty prompt")
            self.prompt_notes = {"prompt_format": "text"}
            return prompt, None
        ids = list(prompt)
        if not ids:
            raise InvalidOptionError("the prompt is empty", "pass a non-empty prompt")
        if self.prompt_format == "ids":
            self.prompt_notes = {"prompt_format": "ids"}
            return ids, len(ids)
        key = tuple(ids)
        if key in self._texts:  # ids this backend made from a text: the text itself goes
            self.prompt_notes = {"prompt_format": "text"}
            return self._texts[key], None
        calibrated = self._calibrated.get(key)
        if calibrated is None:
            calibrated = calibrate_prompt(
                lambda text: self.http.count_prompt_tokens(text, model=self.served_model), self, ids
            )
            self._calibrated[key] = calibrated
        self.prompt_notes = {
            "prompt_format": "text",
            "requested_prompt_tokens": calibrated.target_tokens,
            "server_prompt_tokens": calibrated.server_tokens,
            "calibration_requests": calibrated.tries,
        }
        return calibrated.text, calibrated.server_tokens

    # -- generation ------------------------------------------------------------------------------

    def _body(self, config: GenerationConfig, prompt: str | list[int] | None = None, **fields: Any) -> dict[str, Any]:
        sampling = Sampling(
            max_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            seed=config.seed,
            ignore_eos=config.force_new_tokens,  # vLLM and llama.cpp generate exactly max_tokens
        )
        extra = {"cache_prompt": self.cache_prompt}  # llama.cpp: no prefix cache across repetitions
        return openai_body(prompt, sampling, model=self.served_model, extra=extra, **fields)

    def _timed(self, path: str, body: dict[str, Any], prompt_tokens: int | None, max_tokens: int) -> Generation:
        from llmbench.measurement.metrics import chunk_token_times

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
            raise ServerError(
                f"the server reported an error: {self.http.redact(parsed.error)}", "check the server's log"
            )
        times = chunk_token_times(parsed.chunk_times, parsed.chunk_tokens)
        if parsed.prompt_tokens is not None:
            prompt_tokens = parsed.prompt_tokens
        elif prompt_tokens is None:  # a stream without usage (llama-cpp-python): the server counts apart
            prompt_tokens = self._server_count(body)
        return Generation(
            text=parsed.text,
            token_ids=[UNKNOWN_TOKEN_ID] * len(times),
            prompt_tokens=prompt_tokens,
            t_start=t_start,
            token_times=times,
            t_end=t_end,
            finish_reason=_finish(parsed.finish_reason, len(times), max_tokens),
        )

    def _server_count(self, body: Mapping[str, Any]) -> int:
        """The server's count of a text prompt (remembered), or the local tokenizer's when it gives none."""
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return 0
        if prompt not in self._counts:
            try:
                self._counts[prompt] = self.http.count_prompt_tokens(prompt, model=self.served_model)
            except ServerError:
                self._counts[prompt] = len(self.tokenize(prompt))
        return self._counts[prompt]

    def _streaming(self, path: str, body: Mapping[str, Any]) -> Any:
        """The stream of a POST; a refused prompt of token ids says that the server may not take ids."""
        refused = _IDS_REFUSED if isinstance(body.get("prompt"), list) else None
        return self.http.stream(path, body, refused_hint=refused)

    def generate(self, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> Generation:
        """One streamed completion; every token timestamped from the read that brought it."""
        config = config or GenerationConfig()
        sent, known_length = self._prompt(prompt)
        body = self._body(config, sent)
        return self._timed("/v1/completions", body, known_length, config.max_new_tokens)

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> Generation:
        """The reply through ``/v1/chat/completions``: the server applies the model's template."""
        config = config or GenerationConfig()
        body = self._body(config, None, endpoint="chat", messages=messages)
        return self._timed("/v1/chat/completions", body, None, config.max_new_tokens)

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        """Calls ``on_token(-1)`` for each token as its event arrives (the stream has no ids)."""
        finish: str | None = None
        produced = 0
        for payload in self._payloads("/v1/completions", self._body(config, self._prompt(prompt_ids)[0])):
            for choice in payload.get("choices") or []:
                if _choice_text(choice):
                    produced += 1
                    on_token(UNKNOWN_TOKEN_ID)
                finish = choice.get("finish_reason") or finish
        return _finish(finish, produced, config.max_new_tokens)

    def stream(self, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> Iterator[str]:
        """The text as the server sends it."""
        body = self._body(config or GenerationConfig(), self._prompt(prompt)[0])
        for payload in self._payloads("/v1/completions", body):
            for choice in payload.get("choices") or []:
                text = _choice_text(choice)
                if text:
                    yield text

    def _payloads(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Events of the stream, parsed as they arrive (for display: measurement parses after)."""
        import json

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
                        error = self.http.redact(str(payload["error"]))
                        raise ServerError(f"the server reported an error: {error}")
                    if isinstance(payload, dict):
                        yield payload

    def close(self) -> None:
        self.http.close()


def _finish(reason: str | None, produced: int, max_tokens: int) -> FinishReason:
    """The server's finish reason in the backend's terms: ``length`` when it hit the limit, else ``stop``.

    Servers name an end-of-sequence differently (``stop``, ``eos_token``, ``eos``); a stream that
    says nothing ended at the limit when it produced ``max_tokens`` tokens.
    """
    if reason is None:
        return "length" if produced >= max_tokens else "stop"
    return "length" if reason == "length" else "stop"


def _choice_text(choice: Mapping[str, Any]) -> str:
    """The text of a completions choice (``text``) or a chat one (``delta.content``)."""
    text = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
    return str(text) if text else ""


def _seconds(value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InvalidOptionError(
            f"timeout_s must be a positive number of seconds, got {value!r}", "use -o timeout_s=600"
        )
    return seconds


def _cannot_tokenize(exc: ServerError) -> ServerError:
    return ServerError(
        f"the server cannot tokenize ({exc.message})",
        "pass the model's tokenizer with -o tokenizer=PATH (a GGUF file or HF folder), or a text prompt with --prompt",
    )
