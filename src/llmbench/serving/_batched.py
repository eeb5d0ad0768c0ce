"""A model in this process served batched: requests decoded together, as a serving engine does.

:class:`BatchedTarget` hands each request to a :class:`~llmbench.backends.batching.BatchEngine`
(llama.cpp's is :class:`~llmbench.backends.llama_cpp_batch.LlamaCppBatchEngine`), which admits it
into the running batch as soon as one of its ``slots`` is free and stamps each token as it comes
out; the request's wait for a slot is its queue time. It fills the same
:class:`~llmbench.serving.RequestRecord` as every other target, so TTFT, inter-token latency and
throughput by concurrency show the batching curve rather than a queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from llmbench.backends.batching import BatchEngine, BatchRequest
from llmbench.serving._records import RequestRecord, RequestSpec

__all__ = ["BatchedTarget"]


class BatchedTarget:
    """A loaded backend behind a batch engine of ``slots`` sequences (continuous batching)."""

    batching = "continuous"

    def __init__(
        self,
        backend: Any,
        label: str,
        open_engine: Callable[[], BatchEngine],
        force_new_tokens: bool = True,
    ) -> None:
        self.backend = backend
        """The loaded backend: its tokenizer makes the prompts, its detokenizer the text."""
        self.label = label
        self.open_engine = open_engine
        self.force_new_tokens = force_new_tokens
        self.engine: BatchEngine | None = None

    async def start(self) -> None:
        if self.engine is None:
            self.engine = self.open_engine()

    async def close(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await asyncio.to_thread(engine.close)

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None:
        engine = self.engine
        if engine is None:
            raise RuntimeError("BatchedTarget.send before start")
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def done(_: BatchRequest) -> None:
            loop.call_soon_threadsafe(_resolve, finished)

        record.sent = time.perf_counter()
        prompt = spec.prompt_ids if spec.prompt_ids is not None else self.backend.tokenize(spec.prompt_text or "")
        request = BatchRequest(list(prompt), spec.max_tokens, stop_at_eos=not self.force_new_tokens, on_done=done)
        engine.submit(request)
        try:
            await finished
        except asyncio.CancelledError:
            engine.cancel(request)
            record.end = time.perf_counter()
            record.error, record.detail = "cancelled", "still running at the drain deadline"
            raise
        record.end = time.perf_counter()
        if request.admitted == request.admitted:  # not NaN: it got a slot
            record.queue_s = max(0.0, request.admitted - record.sent)
        record.prompt_tokens = len(request.prompt_ids)
        if request.error is not None:
            record.error, record.detail = "backend", request.error
            return
        record.status = 200
        record.set_chunks(request.token_times)
        record.output_tokens = len(request.token_ids)
        record.text = self.backend.detokenize(request.token_ids)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
