"""transformers' continuous batching (``ContinuousBatchingManager``) behind :class:`BatchEngine`.

transformers 5 serves requests from a thread of its own with a paged KV cache: a request joins
the running batch when there is room, and each generated token is stamped (``perf_counter``) in
that thread (``record_timestamps``). This adapter gives it :class:`BatchRequest` objects: one
``add_request`` each (greedy; end-of-sequence ignored unless the request stops at it), and a
reader thread that hands each finished result back. The cache is sized for ``slots`` sequences of
``n_ctx`` tokens, and at most ``slots`` requests are decoded together.
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Any

from llmbench.backends.batching import BatchRequest
from llmbench.errors import BackendUnavailableError

__all__ = ["TransformersBatchEngine", "has_continuous_batching"]

_PAGE = 256


def has_continuous_batching(model: Any) -> bool:
    """Whether this transformers model offers ``init_continuous_batching`` (transformers >= 5)."""
    return callable(getattr(model, "init_continuous_batching", None))


class TransformersBatchEngine:
    """Continuous batching on a loaded transformers model: ``slots`` sequences of ``n_ctx`` tokens."""

    def __init__(self, model: Any, eos_ids: frozenset[int], slots: int, n_ctx: int) -> None:
        if not has_continuous_batching(model):
            raise BackendUnavailableError("this transformers has no continuous batching", "use --batching queue")
        from transformers import GenerationConfig
        from transformers.generation import ContinuousBatchingConfig  # type: ignore[attr-defined]

        self.slots = slots
        self.eos_ids = sorted(eos_ids)
        pages = math.ceil(n_ctx / _PAGE)
        settings = ContinuousBatchingConfig(
            page_size=_PAGE,
            num_blocks=slots * pages + 1,
            max_batch_tokens=max(n_ctx, slots),
            max_requests_per_batch=slots,
            max_blocks_per_request=0,  # no flash-attention decode path (CPU)
            use_cuda_graph=False,
        )
        generation = GenerationConfig(do_sample=False, eos_token_id=-1, max_new_tokens=1)  # type: ignore[no-untyped-call]
        self.manager = model.init_continuous_batching(generation_config=generation, continuous_batching_config=settings)
        self.requests: dict[str, BatchRequest] = {}
        self.lock = threading.Lock()
        self.counter = 0
        self.stopping = threading.Event()
        self.manager.start()
        self.reader = threading.Thread(target=self._read, name="llmbench-hf-batch", daemon=True)
        self.reader.start()

    def submit(self, request: BatchRequest) -> None:
        with self.lock:
            self.counter += 1
            request_id = f"llmbench-{self.counter}"
            self.requests[request_id] = request
        eos: int | list[int] = self.eos_ids if request.stop_at_eos and self.eos_ids else -1
        added = self.manager.add_request(
            request.prompt_ids, request_id=request_id, max_new_tokens=request.max_new_tokens,
            record_timestamps=True, eos_token_id=eos,
        )  # fmt: skip
        if added is None:
            self._fail(request_id, "transformers refused the request")

    def cancel(self, request: BatchRequest) -> None:
        request.cancelled = True
        with self.lock:
            found = [key for key, value in self.requests.items() if value is request]
        for request_id in found:
            self.manager.cancel_request(request_id)

    def close(self) -> None:
        self.stopping.set()
        self.manager.stop(block=True)
        self.reader.join()
        with self.lock:
            left = list(self.requests)
        for request_id in left:
            self._fail(request_id, "the engine was closed")

    def _fail(self, request_id: str, error: str) -> None:
        with self.lock:
            request = self.requests.pop(request_id, None)
        if request is not None:
            request.error = error
            request.done()

    def _read(self) -> None:
        """Hand each finished result back (the manager's queue is waited on, 0.1 s at a time)."""
        while not (self.stopping.is_set() and not self.manager.is_running()):
            try:
                result = self.manager.output_router.output_queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if not result.is_finished():
                continue
            with self.lock:
                request = self.requests.pop(result.request_id, None)
            if request is None:
                continue
            tokens = list(result.generated_tokens)
            times = list(result.timestamps or [])
            if request.stop_at_eos and tokens and tokens[-1] in self.eos_ids:
                tokens, times = tokens[:-1], times[:-1]
                request.finish_reason = "stop"
            else:
                request.finish_reason = "length"
            request.token_ids, request.token_times = tokens, times
            request.admitted = float(result.lifespan[0]) if result.lifespan[0] >= 0 else math.nan
            if result.error is not None:
                request.error = str(result.error)
            elif request.cancelled:
                request.error = "cancelled"
            request.done()
