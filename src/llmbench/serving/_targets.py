"""What a load test sends requests to: an OpenAI-compatible server, or a model in this process.

Both take a prepared :class:`RequestSpec` and fill a :class:`RequestRecord`; neither parses,
tokenizes or allocates per token while a response streams. The HTTP target keeps one aiohttp
session with a keep-alive HTTP/1.1 pool as large as the concurrency, reads whatever has arrived
(``readany``: no line buffer whose limit could stall a long stream), stamps each read, and parses
the response once it has ended. Deadlines (the whole request, a silent stream) are kept by one
watchdog task, not by timers per request or per read; the session keeps no cookies (requests of
a load test are independent). With the reused payload and ``readany``, these settings save ~10 %
of a request's client cost (``benchmarks/load_client_instructions.py``).

Bodies, credentials, the stream parsers and the retry rule are :mod:`llmbench.transport`'s,
shared with the ``openai`` backend. A request the server may have seen is sent again only when
the user allows it (``retries``); one that met a keep-alive connection the server had already
closed (the request could not be written) is sent again and counted as such (``attempts``,
``retry_reason`` of its record). A server that closes every connection after its answer without
saying so (llama-server) is found out with one request before the steps, and then gets a new
connection per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

from llmbench.serving._records import RequestRecord, RequestSpec
from llmbench.serving._stream import finish_record
from llmbench.transport import (
    STALE,
    CalibratedPrompt,
    Credential,
    Endpoint,
    PromptTokenizer,
    Sampling,
    SyncClient,
    api_key_from,
    api_root,
    as_credential,
    calibrate_prompt,
    check_retries,
    closes_after_response,
    encode,
    endpoint_path,
    join_url,
    may_resend,
    merge_reads,
    openai_body,
    reconcile_counts,
    redact,
    split_credentials,
    tgi_body,
)
from llmbench.transport import prompt_format as check_prompt_format

__all__ = [
    "Endpoint",
    "GeminiTarget",
    "HFInferenceTarget",
    "InProcessTarget",
    "OpenAITarget",
    "TGITarget",
    "Target",
    "api_key_from",  # re-exported: serving/_load.py imports it from here
]

_ERROR_DETAIL_BYTES = 2000


class Target(Protocol):
    label: str

    async def start(self) -> None: ...

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None: ...

    async def close(self) -> None: ...


class _NeverRaised(Exception):
    """Stands in for an aiohttp exception class an older aiohttp does not have."""


class OpenAITarget:
    """``/v1/completions`` or ``/v1/chat/completions`` of vLLM, llama.cpp, Ollama, TGI, OpenAI.

    ``base_url`` may carry a credential (``http://user:password@host``, ``?api_key=KEY``): it is
    taken out of the URL (``label`` is the URL without it) and sent as its header; ``api_key``
    (from the environment) wins over it. ``prompt_format`` is ``text`` (any server; exact lengths
    through :meth:`prompt_spec`) or ``ids`` (servers that take token ids). ``retries``: how many
    times a request the server may have seen is sent again (default 0, never).
    """

    protocol = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        endpoint: Endpoint = "completions",
        api_key: str | Credential | None = None,
        pool_size: int = 64,
        request_timeout_s: float = 600.0,
        stall_timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        extra_body: dict[str, Any] | None = None,
        keep_text: bool = False,
        retries: int = 0,
        prompt_format: str = "text",
        keepalive: bool | None = None,
    ) -> None:
        clean, url_credential = split_credentials(base_url)
        self.credential = as_credential(api_key) or url_credential
        self.url = join_url(api_root(clean), endpoint_path(endpoint))
        self.label = clean
        self.model = model
        self.endpoint = endpoint
        # JSON bodies are sent as bytes with their content type per request; no other default header
        # but the credential's (aiohttp merges session headers into every request).
        self.headers: dict[str, str] = self.credential.header() if self.credential is not None else {}
        self.secrets: tuple[str, ...] = self.credential.secrets if self.credential is not None else ()
        self.pool_size = pool_size
        self.request_timeout_s = request_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.extra_body = extra_body or {}
        self.keep_text = keep_text
        """Parse each response's text too (off by default: load tests need token times, not text)."""
        self.retries = check_retries(retries)
        self.prompt_format = check_prompt_format(prompt_format)
        self.keepalive = keepalive
        """Reuse connections; None: find out at :meth:`start` whether the server closes them after
        each response without saying so (then False: a new connection per request)."""
        self.server_closes_connections: bool | None = None
        """What :meth:`start` found (None when ``keepalive`` was given)."""
        self.session: Any = None
        self._counter: SyncClient | None = None

    def body(self, prompt_text: str | None, prompt_ids: Sequence[int] | None, max_tokens: int) -> bytes:
        """The request body: greedy, streamed, usage requested, exactly ``max_tokens`` when the server allows.

        The prompt goes as ids when the target's ``prompt_format`` is ``ids`` (or no text is given),
        as text otherwise.
        """
        use_ids = prompt_ids is not None and (self.prompt_format == "ids" or prompt_text is None)
        prompt = list(prompt_ids) if use_ids and prompt_ids is not None else (prompt_text or "")
        if self.endpoint == "chat" and not isinstance(prompt, str):
            prompt = prompt_text or ""
        sampling = Sampling(max_tokens=max_tokens)
        return encode(openai_body(prompt, sampling, endpoint=self.endpoint, model=self.model, extra=self.extra_body))

    def probe_body(self) -> bytes:
        """A one-token request, for finding out how the server treats its connections."""
        sampling = Sampling(max_tokens=1, ignore_eos=False)
        prompt = openai_body("Hello", sampling, endpoint=self.endpoint, model=self.model, extra=self.extra_body)
        return encode(prompt)

    # -- prompts of an exact length ----------------------------------------------------------------

    def find_keepalive(self) -> bool:
        """Whether to reuse connections: one request (synchronous) tells whether the server closes
        them after each answer without saying so; against such a server reusing one would fail
        requests that the retry rule may not send again. Decided once (``keepalive``)."""
        if self.keepalive is None:
            timeout_s = min(self.request_timeout_s, 60.0)
            closes = closes_after_response(self.url, self.probe_body(), self.headers, timeout_s=timeout_s)
            self.server_closes_connections, self.keepalive = closes, not closes
        return self.keepalive

    def count_prompt_tokens(self, text: str) -> int:
        """The server's count of ``text`` (``usage.prompt_tokens`` of a one-token request; synchronous)."""
        if self._counter is None:
            self._counter = SyncClient(
                self.label, self.credential, timeout_s=self.request_timeout_s,
                connect_timeout_s=self.connect_timeout_s, retries=self.retries,
            )  # fmt: skip
            if not self.find_keepalive():
                self._counter.stop_reusing_connections()
        return self._counter.count_prompt_tokens(text, endpoint="completions", model=self.model)

    def calibrate(self, tokenizer: PromptTokenizer, prompt_ids: Sequence[int]) -> CalibratedPrompt:
        """The text the server counts as ``len(prompt_ids)`` tokens (see :func:`llmbench.transport.calibrate_prompt`)."""
        return calibrate_prompt(self.count_prompt_tokens, tokenizer, prompt_ids)

    def prompt_spec(self, tokenizer: PromptTokenizer, prompt_ids: Sequence[int], max_tokens: int) -> RequestSpec:
        """A prepared request for the prompt ``prompt_ids`` as this target sends it (synchronous: call it
        before the steps).

        ``ids``: the ids. ``text`` (default): the text the server counts as ``len(prompt_ids)``
        tokens, calibrated against the server; ``spec.prompt_tokens`` is then the server's count
        (the requested one unless calibration could not hit it). Chat: the ids' text as the user
        message (the server's template adds its own tokens, counted in the stream's usage).
        """
        ids = list(prompt_ids)
        if self.prompt_format == "ids" and self.endpoint == "completions":
            return RequestSpec(None, ids, len(ids), max_tokens, self.body(None, ids, max_tokens))
        if self.endpoint == "chat":
            text = tokenizer.detokenize(ids)
            return RequestSpec(text, None, None, max_tokens, self.body(text, None, max_tokens))
        calibrated = self.calibrate(tokenizer, ids)
        return RequestSpec(
            calibrated.text, None, calibrated.server_tokens, max_tokens, self.body(calibrated.text, None, max_tokens)
        )

    # -- the load test ---------------------------------------------------------------------------

    async def start(self) -> None:
        import aiohttp

        self._close_counter()
        keepalive = self.keepalive if self.keepalive is not None else await asyncio.to_thread(self.find_keepalive)
        connector = aiohttp.TCPConnector(limit=self.pool_size, force_close=not keepalive)
        # No timer per request (total) or per read (sock_read): at thousands of requests a second
        # their cost shows; one watchdog task ends late and stalled requests instead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self.headers, cookie_jar=aiohttp.DummyCookieJar()
        )
        self.in_flight: dict[int, tuple[RequestRecord, asyncio.Task[Any]]] = {}
        # One reusable JSON payload per prepared body: no per-request header merging or wrapping.
        self.payloads: dict[bytes, Any] = {}
        self.payload_type = aiohttp.BytesPayload
        self.unanswered = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
        self.closing = getattr(aiohttp, "ClientConnectionResetError", _NeverRaised)
        self.aiohttp = aiohttp  # imported once, not at every request
        self.watchdog = asyncio.create_task(self._watch_deadlines())

    async def _watch_deadlines(self) -> None:
        """Cancel a request past ``request_timeout_s`` since it was sent (``timeout``), or whose
        stream has been silent for ``stall_timeout_s`` (``stall``); checked 4 times per period."""
        period = max(0.05, min(1.0, self.stall_timeout_s / 4, self.request_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.perf_counter()
            for record, task in list(self.in_flight.values()):
                if record.error is not None:
                    continue
                last = record.reads[-1][0] if record.reads else record.sent
                if now - record.sent >= self.request_timeout_s:
                    record.error, record.detail = "timeout", f"over {self.request_timeout_s:g} s"
                elif now - last >= self.stall_timeout_s:
                    record.error, record.detail = "stall", f"no data for {self.stall_timeout_s:g} s"
                else:
                    continue
                task.cancel()

    async def close(self) -> None:
        self._close_counter()
        if self.session is not None:
            self.watchdog.cancel()
            await self.session.close()
            self.session = None

    def _close_counter(self) -> None:
        if self._counter is not None:
            self._counter.close()
            self._counter = None

    def _unanswered_reason(self, exc: BaseException) -> str:
        """Why a request got no answer: ``stale_keepalive`` when aiohttp found the connection closed
        before it could write the request (so the server cannot have read it), else its kind."""
        if isinstance(exc, self.closing) or isinstance(exc.__cause__, self.closing):
            return STALE
        if isinstance(exc, self.aiohttp.ClientConnectorError):
            return "connect"
        return "disconnect"

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None:
        """Send one request and stamp every read of its stream; parse it once it has ended."""
        aiohttp = self.aiohttp
        record.protocol = self.protocol
        task = asyncio.current_task()
        if task is not None:
            self.in_flight[id(record)] = (record, task)
        payload = self.payloads.get(spec.body)
        if payload is None:
            payload = self.payloads[spec.body] = self.payload_type(spec.body, content_type="application/json")
        clock = time.perf_counter
        reads: list[tuple[float, bytes]] = []
        record.reads = reads
        append = reads.append
        post = self.session.post
        record.sent = clock()
        resent = stale = 0
        try:
            while True:
                try:
                    async with post(self.url, data=payload) as response:
                        record.status = response.status
                        if response.status != 200:
                            detail = await response.content.read(_ERROR_DETAIL_BYTES)
                            record.error = f"http_{response.status}"
                            record.detail = detail.decode("utf-8", "replace").strip()[:500]
                            break
                        read = response.content.readany  # iter_any without its iterator and StopAsyncIteration
                        while chunk := await read():
                            append((clock(), chunk))
                    break
                except self.unanswered as exc:
                    if reads or record.status is not None:
                        raise  # an answer had begun: never sent again
                    reason = self._unanswered_reason(exc)
                    if not may_resend(reason, resent, stale, self.retries):
                        raise
                    if reason == STALE:
                        stale += 1
                    else:
                        resent += 1
                    record.attempts += 1
                    record.retry_reason = reason
        except aiohttp.ClientConnectorError as exc:
            record.error, record.detail = "connect", str(exc)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            record.error, record.detail = "disconnect", str(exc) or type(exc).__name__
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            record.error, record.detail = "timeout", str(exc) or type(exc).__name__  # connecting: sock_connect
        except aiohttp.ClientError as exc:
            record.error, record.detail = "client", f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            if record.error in ("stall", "timeout") and task is not None and task.uncancel() == 0:
                return  # our watchdog's cancellation: the request failed, the worker goes on
            record.error, record.detail = "cancelled", "still running at the drain deadline"
            raise
        finally:
            record.end = clock()
            self.in_flight.pop(id(record), None)
        # Parsed now, after its end was stamped: the raw bytes are freed as the step goes (memory
        # stays flat over long steps) and only chunk times and counts are kept.
        finish_record(record, self.keep_text)
        if record.prompt_tokens is None:  # a stream without usage: the prepared count (the server's, calibrated)
            record.prompt_tokens = spec.prompt_tokens
        if record.detail is not None and self.secrets:
            record.detail = redact(record.detail, self.secrets)


class InProcessTarget:
    """A model loaded in this process, served one request at a time (requests queue, as at a server).

    Generation runs in one worker thread through the backend interface; each request's wait for
    that thread is its queue time, reported apart from its latency. For backends that cannot
    decode several requests together (:class:`~llmbench.serving.BatchedTarget` serves those that can).
    """

    batching = "queue"

    def __init__(self, backend: Any, label: str, force_new_tokens: bool = True) -> None:
        self.backend = backend
        self.label = label
        self.force_new_tokens = force_new_tokens
        self.executor: Any = None

    async def start(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmbench-model")

    async def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None:
        from llmbench.backends.base import GenerationConfig

        config = GenerationConfig(max_new_tokens=spec.max_tokens, force_new_tokens=self.force_new_tokens)
        record.sent = time.perf_counter()

        def work() -> Any:
            record.queue_s = time.perf_counter() - record.sent
            prompt = spec.prompt_ids if spec.prompt_ids is not None else (spec.prompt_text or "")
            return self.backend.generate(prompt, config)

        try:
            generation = await asyncio.get_running_loop().run_in_executor(self.executor, work)
        except Exception as exc:
            record.error, record.detail = "backend", f"{type(exc).__name__}: {exc}"
            record.end = time.perf_counter()
            return
        record.end = time.perf_counter()
        record.status = 200
        record.set_chunks(generation.token_times)
        record.output_tokens = generation.output_tokens
        record.prompt_tokens = generation.prompt_tokens
        record.text = generation.text


class TGITarget(OpenAITarget):
    """Text Generation Inference's native ``/generate_stream`` (one server-sent event per token; text prompts)."""

    protocol = "tgi"

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.url = join_url(api_root(self.label), "/generate_stream")

    def body(self, prompt_text: str | None, prompt_ids: Sequence[int] | None, max_tokens: int) -> bytes:
        return encode(tgi_body(prompt_text or "", max_tokens, self.extra_body))

    def probe_body(self) -> bytes:
        return encode(tgi_body("Hello", 1, self.extra_body))


class _ChunkTarget:
    """A target whose client library hands over parsed chunks: stamp each, derive token times after."""

    label: str

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @staticmethod
    def finish(record: RequestRecord, chunks: list[tuple[float, str, int | None]], total: int | None) -> None:
        content = [(t, text, count) for t, text, count in chunks if text or count is None]
        counts = reconcile_counts([1] * len(content), [count for _, _, count in content], total)
        times, tokens = merge_reads([t for t, _, _ in content], counts)
        record.set_chunks(times, tokens)
        record.output_tokens = total if total is not None else sum(tokens)
        record.text = "".join(text for _, text, _ in content)
        if not times:
            record.error, record.detail = "empty", "the stream ended without a token"


class GeminiTarget(_ChunkTarget):
    """Gemini through the ``google-genai`` client (async streaming); the key comes from the environment."""

    def __init__(self, model: str, api_key: str | None, base_url: str | None = None) -> None:
        try:
            from google import genai
            from google.genai import types
        except ImportError:
            from llmbench.errors import missing_extra

            raise missing_extra("google-genai", "gemini") from None
        options = types.HttpOptions(base_url=base_url.rstrip("/") + "/") if base_url else None
        self.client = genai.Client(api_key=api_key or "unset", http_options=options)
        self.types = types
        self.model = model
        self.label = f"gemini:{model}"

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None:
        from google.genai import errors

        chunks: list[tuple[float, str, int | None]] = []
        total: int | None = None
        config = self.types.GenerateContentConfig(max_output_tokens=spec.max_tokens, temperature=0.0)
        record.sent = time.perf_counter()
        try:
            stream = await self.client.aio.models.generate_content_stream(
                model=self.model, contents=spec.prompt_text or "", config=config
            )
            async for chunk in stream:
                arrived = time.perf_counter()
                usage = chunk.usage_metadata
                count = usage.candidates_token_count if usage is not None else None
                total = count if count is not None else total
                if usage is not None and usage.prompt_token_count is not None:
                    record.prompt_tokens = usage.prompt_token_count
                chunks.append((arrived, chunk.text or "", count))
        except errors.APIError as exc:
            record.error, record.detail = f"http_{exc.code}", f"{exc.status}: {exc.message}"
        except Exception as exc:  # the client wraps transport errors in its own and httpx's types
            record.error, record.detail = _transport_kind(exc), f"{type(exc).__name__}: {exc}"
        record.end = time.perf_counter()
        record.status = 200 if record.error is None else record.status
        if record.error is None:
            self.finish(record, chunks, total)


class HFInferenceTarget(_ChunkTarget):
    """A Hugging Face Inference endpoint (or any TGI) through ``huggingface_hub.AsyncInferenceClient``.

    llmbench runs with ``HF_HUB_OFFLINE`` set so that nothing downloads weights, and
    huggingface_hub (1.0 and later) enforces that switch in a request hook of its HTTP client,
    which would refuse the endpoint the user named. This client gets an HTTP client of its own
    without that hook; the switch stays as it is for everything else in the process.
    """

    def __init__(self, base_url: str, api_key: str | Credential | None = None) -> None:
        from huggingface_hub import AsyncInferenceClient

        clean, url_credential = split_credentials(base_url)
        credential = as_credential(api_key) or url_credential
        headers = credential.header() if credential is not None and credential.scheme == "Basic" else None
        token = credential.secret if credential is not None and credential.scheme == "Bearer" else None
        self.client = AsyncInferenceClient(base_url=clean, token=token, headers=headers)
        if token is None:
            # False, not None: None would send the token saved on this machine to whatever URL this is.
            self.client.token = False  # type: ignore[assignment]
        self.secrets: tuple[str, ...] = credential.secrets if credential is not None else ()
        self.label = clean

    async def start(self) -> None:
        if getattr(self.client, "_async_client", False) is None:  # huggingface_hub >= 1.0
            from huggingface_hub import get_async_session

            http = get_async_session()
            # Its request hook refuses every request in offline mode; its response hook (reading
            # error bodies) stays.
            http.event_hooks = {"request": [], "response": list(http.event_hooks.get("response", []))}
            self.client._async_client = await self.client.exit_stack.enter_async_context(http)

    async def close(self) -> None:
        await self.client.close()  # type: ignore[no-untyped-call]

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None:
        from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

        chunks: list[tuple[float, str, int | None]] = []
        total: int | None = None
        record.sent = time.perf_counter()
        try:
            stream = await self.client.text_generation(
                spec.prompt_text or "", stream=True, details=True, max_new_tokens=spec.max_tokens, do_sample=False
            )
            async for event in stream:
                arrived = time.perf_counter()
                # A special token (end of sequence) is generated work too: it counts, its text does not.
                chunks.append((arrived, "" if event.token.special else event.token.text, None))
                if event.details is not None:
                    total = event.details.generated_tokens
        except TextGenerationError as exc:
            record.error, record.detail = "server_error", f"{type(exc).__name__}: {exc}"
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            record.error, record.detail = f"http_{status}", str(exc).splitlines()[0]
        except Exception as exc:
            record.error, record.detail = _transport_kind(exc), f"{type(exc).__name__}: {exc}"
        record.end = time.perf_counter()
        if record.error is None:
            record.status = 200
            self.finish(record, chunks, total)
        elif record.detail is not None and self.secrets:
            record.detail = redact(record.detail, self.secrets)


def _transport_kind(exc: BaseException) -> str:
    name = type(exc).__name__.lower()
    if "connect" in name:
        return "connect"
    if "timeout" in name:
        return "timeout"
    return "client"
