"""What a load test sends requests to: an OpenAI-compatible server, or a model in this process.

Both take a prepared :class:`RequestSpec` and fill a :class:`RequestRecord`; neither parses,
tokenizes or allocates per token while a response streams. The HTTP target keeps one aiohttp
session with a keep-alive HTTP/1.1 pool as large as the concurrency, reads whatever has arrived
(``readany``: no line buffer whose limit could stall a long stream), stamps each read, and parses
the response once it has ended. Deadlines (the whole request, a silent stream) are kept by one
watchdog task, not by timers per request or per read; the session keeps no cookies (requests of
a load test are independent). With the reused payload and ``readany``, these settings save ~10 %
of a request's client cost (``benchmarks/load_client_instructions.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from llmbench.errors import LLMBenchError
from llmbench.serving._records import RequestRecord, RequestSpec
from llmbench.serving._stream import finish_record

Endpoint = Literal["completions", "chat"]
_ERROR_DETAIL_BYTES = 2000
_STALE_RETRIES = 3


class Target(Protocol):
    label: str

    async def start(self) -> None: ...

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None: ...

    async def close(self) -> None: ...


def api_key_from(env_var: str | None) -> str | None:
    """An API key is read from the environment, never from a flag, never stored."""
    if not env_var:
        return None
    value = os.environ.get(env_var)
    if value is None:
        raise LLMBenchError(f"environment variable {env_var} is not set", f"export {env_var}=... or drop --api-key-env")
    return value


class OpenAITarget:
    """``/v1/completions`` or ``/v1/chat/completions`` of vLLM, llama.cpp, Ollama, TGI, OpenAI."""

    protocol = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        endpoint: Endpoint = "completions",
        api_key: str | None = None,
        pool_size: int = 64,
        request_timeout_s: float = 600.0,
        stall_timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        extra_body: dict[str, Any] | None = None,
        keep_text: bool = False,
    ) -> None:
        base = base_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.url = base + ("/completions" if endpoint == "completions" else "/chat/completions")
        self.label = base_url
        self.model = model
        self.endpoint = endpoint
        # JSON bodies are sent as bytes with their content type per request; no other default header
        # but the key (aiohttp merges session headers into every request).
        self.headers: dict[str, str] = {}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.pool_size = pool_size
        self.request_timeout_s = request_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.extra_body = extra_body or {}
        self.keep_text = keep_text
        """Parse each response's text too (off by default: load tests need token times, not text)."""
        self.session: Any = None

    def body(self, prompt_text: str | None, prompt_ids: Sequence[int] | None, max_tokens: int) -> bytes:
        """The request body: greedy, streamed, usage requested, exactly ``max_tokens`` when the server allows."""
        body: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,  # vLLM, llama.cpp: generate exactly max_tokens (others ignore it)
        }
        if self.model:
            body["model"] = self.model
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt_text or ""}]
        else:
            body["prompt"] = list(prompt_ids) if prompt_ids is not None else prompt_text
        body.update(self.extra_body)
        return json.dumps(body).encode()

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.pool_size)
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
        self.stale = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
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
        if self.session is not None:
            self.watchdog.cancel()
            await self.session.close()
            self.session = None

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
        attempt = 0
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
                except self.stale:
                    # A keep-alive connection the server had just closed (llama-server closes
                    # them after a stream): nothing was sent or received, so send again; the
                    # dead connection has left the pool, though the next one may be dead too.
                    if attempt == _STALE_RETRIES or record.reads or record.status is not None:
                        raise
                    attempt += 1
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


class InProcessTarget:
    """A model loaded in this process, served one request at a time (requests queue, as at a server).

    Generation runs in one worker thread through the backend interface; each request's wait for
    that thread is its queue time, reported apart from its latency.
    """

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
    """Text Generation Inference's native ``/generate_stream`` (one server-sent event per token)."""

    protocol = "tgi"

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.url = base_url.rstrip("/") + "/generate_stream"

    def body(self, prompt_text: str | None, prompt_ids: Sequence[int] | None, max_tokens: int) -> bytes:
        parameters = {"max_new_tokens": max_tokens, "do_sample": False, "details": True, **self.extra_body}
        return json.dumps({"inputs": prompt_text or "", "parameters": parameters}).encode()


class _ChunkTarget:
    """A target whose client library hands over parsed chunks: stamp each, derive token times after."""

    label: str

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @staticmethod
    def finish(record: RequestRecord, chunks: list[tuple[float, str, int | None]], total: int | None) -> None:
        from llmbench.serving._stream import merge_reads, reconcile_counts

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
    """A Hugging Face Inference endpoint (or any TGI) through ``huggingface_hub.AsyncInferenceClient``."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        from huggingface_hub import AsyncInferenceClient

        self.client = AsyncInferenceClient(base_url=base_url, token=api_key)
        if api_key is None:
            # False, not None: None would send the token saved on this machine to whatever URL this is.
            self.client.token = False  # type: ignore[assignment]
        self.label = base_url

    async def start(self) -> None:
        # llmbench sets HF_HUB_OFFLINE so that nothing downloads weights; the inference client
        # honours that switch too, but an endpoint the user named is a target, not a download.
        from huggingface_hub import constants

        self._offline = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = False

    async def close(self) -> None:
        from huggingface_hub import constants

        await self.client.close()  # type: ignore[no-untyped-call]
        constants.HF_HUB_OFFLINE = getattr(self, "_offline", constants.HF_HUB_OFFLINE)

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


def _transport_kind(exc: BaseException) -> str:
    name = type(exc).__name__.lower()
    if "connect" in name:
        return "connect"
    if "timeout" in name:
        return "timeout"
    return "client"
