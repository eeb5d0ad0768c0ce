"""What a load test sends requests to: an OpenAI-compatible server, or a model in this process.

Both take a prepared :class:`RequestSpec` and fill a :class:`RequestRecord`; neither parses,
tokenizes or allocates per token on the hot path. The HTTP target keeps one aiohttp session with a
keep-alive HTTP/1.1 pool as large as the concurrency, reads the body with ``iter_any`` (no line
buffer whose limit could stall a long stream) and enforces a per-read stall timeout and a total
deadline through aiohttp's own timers.
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

Endpoint = Literal["completions", "chat"]
_ERROR_DETAIL_BYTES = 2000


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
    ) -> None:
        base = base_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.url = base + ("/completions" if endpoint == "completions" else "/chat/completions")
        self.label = base_url
        self.model = model
        self.endpoint = endpoint
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.pool_size = pool_size
        self.request_timeout_s = request_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.extra_body = extra_body or {}
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

        connector = aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=self.pool_size, force_close=False)
        timeout = aiohttp.ClientTimeout(
            total=self.request_timeout_s, sock_connect=self.connect_timeout_s, sock_read=self.stall_timeout_s
        )
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self.headers)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None:
        import aiohttp

        clock = time.perf_counter
        append = record.reads.append
        record.sent = clock()
        try:
            async with self.session.post(self.url, data=spec.body) as response:
                record.status = response.status
                if response.status != 200:
                    detail = await response.content.read(_ERROR_DETAIL_BYTES)
                    record.error = f"http_{response.status}"
                    record.detail = detail.decode("utf-8", "replace").strip()[:500]
                    return
                async for chunk in response.content.iter_any():
                    append((clock(), chunk))
        except aiohttp.ClientConnectorError as exc:
            record.error, record.detail = "connect", str(exc)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            record.error, record.detail = "disconnect", str(exc) or type(exc).__name__
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            stalled = record.reads and clock() - record.reads[-1][0] >= self.stall_timeout_s * 0.99
            record.error = "stall" if stalled or not record.reads else "timeout"
            record.detail = str(exc) or type(exc).__name__
        except aiohttp.ClientError as exc:
            record.error, record.detail = "client", f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            record.error, record.detail = "cancelled", "still running at the drain deadline"
            raise
        finally:
            record.end = clock()


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
        record.token_times = list(generation.token_times)
        record.output_tokens = generation.output_tokens
        record.prompt_tokens = generation.prompt_tokens
        record.text = generation.text
