"""llama.cpp continuous batching in this process: several sequences decoded in one ``llama_batch``.

The engine makes a second context on the backend's loaded model (the weights are shared) with
one KV-cache sequence per slot (``n_seq_max = slots``, ``n_ctx`` tokens each, not unified) and
the backend's other context settings (threads, batch sizes, flash attention, KV types). Its
thread runs the loop a llama.cpp server runs:

1. admit waiting requests into free slots (a new request joins the running batch at once);
2. build one batch: the last token of every decoding sequence, then prompt tokens of admitted
   sequences up to ``n_batch`` in all (a long prompt is prefilled over several steps), each token
   with its sequence's id and position; logits only where a token will be sampled;
3. ``llama_decode`` once, then sample each of those sequences greedily and stamp its token;
4. a sequence that has ended has its KV cells removed (``llama_memory_seq_rm``) and frees its slot.

Sampling is greedy (the load test's setting), so each request's text is the text one request
alone would get from :class:`~llmbench.backends.llama_cpp.LlamaCppBackend` (up to the last bits
of batched arithmetic).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from llmbench.backends.batching import BatchRequest
from llmbench.backends.llama_cpp import LlamaCppBackend
from llmbench.errors import InvalidOptionError
from llmbench.models import import_llama_cpp, quiet_stderr

__all__ = ["LlamaCppBatchEngine"]

_MAX_SEQUENCES = 256
"""llama.cpp's ``LLAMA_MAX_SEQ``: sequences one context holds at most."""


@dataclass(eq=False)
class _Sequence:
    request: BatchRequest
    slot: int
    prefilled: int = 0
    """Prompt tokens already in the KV cache."""
    position: int = 0

    @property
    def decoding(self) -> bool:
        return self.prefilled == len(self.request.prompt_ids)


class LlamaCppBatchEngine:
    """Continuous batching on a loaded :class:`LlamaCppBackend`: ``slots`` sequences of ``n_ctx`` tokens."""

    def __init__(self, backend: LlamaCppBackend, slots: int, n_ctx: int | None = None) -> None:
        if not 1 <= slots <= _MAX_SEQUENCES:
            raise InvalidOptionError(
                f"llama.cpp decodes 1 to {_MAX_SEQUENCES} sequences together, not {slots}",
                f"run at most {_MAX_SEQUENCES} requests in flight",
            )
        self.llama_cpp = llama_cpp = import_llama_cpp()
        llm = backend.llm
        self.slots = slots
        self.n_ctx = n_ctx or llm.n_ctx()
        base = llm.context_params
        params = type(base).from_buffer_copy(base)
        params.n_seq_max = slots
        params.n_ctx = self.n_ctx * slots
        # A stream per sequence: the same greedy tokens as one request alone. One unified cache gave
        # ~1.2x the tok/s at 4 in flight on 2 CPU cores, but its attention sums in another order and a
        # near tie then flips (tests/test_in_process_batching.py failed at token 11 of 16).
        params.kv_unified = False
        params.n_batch = max(int(base.n_batch), slots)
        params.n_ubatch = max(int(base.n_ubatch), min(slots, params.n_batch))
        with quiet_stderr():
            self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise InvalidOptionError(
                f"llama.cpp could not make a context of {slots} sequences of {self.n_ctx} tokens",
                "lower the concurrency or --n-ctx",
            )
        self.n_batch = int(params.n_batch)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llm._model.vocab
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.sampler = llama_cpp.llama_sampler_init_greedy()
        self.inbox: queue.SimpleQueue[BatchRequest | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="llmbench-llama-batch", daemon=True)
        self.thread.start()

    def submit(self, request: BatchRequest) -> None:
        self.inbox.put(request)

    def cancel(self, request: BatchRequest) -> None:
        request.cancelled = True  # seen at the engine's next step

    def close(self) -> None:
        if self.thread.is_alive():
            self.inbox.put(None)
            self.thread.join()
        if self.ctx:
            llama_cpp = self.llama_cpp
            llama_cpp.llama_sampler_free(self.sampler)
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def __enter__(self) -> LlamaCppBatchEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the engine's thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        pending: deque[BatchRequest] = deque()
        active: list[_Sequence] = []
        free = list(range(self.slots - 1, -1, -1))
        stopping = False
        try:
            while not stopping:
                if not active and not pending:
                    first = self.inbox.get()  # idle: wait for a request (no polling)
                    if first is None:
                        break
                    pending.append(first)
                while True:
                    try:
                        item = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    pending.append(item)
                if stopping:
                    break
                for sequence in [s for s in active if s.request.cancelled]:
                    self._end(sequence, active, free, None, "cancelled")
                while free and pending:
                    request = pending.popleft()
                    if request.cancelled:
                        request.error = "cancelled"
                        request.done()
                    elif self._admissible(request):
                        request.admitted = time.perf_counter()
                        active.append(_Sequence(request, free.pop()))
                if active:
                    self._step(active, free)
        except BaseException as exc:  # the thread must not die silently: every waiting request is told
            for sequence in list(active):
                self._end(sequence, active, free, None, f"{type(exc).__name__}: {exc}")
            for request in pending:
                request.error = f"{type(exc).__name__}: {exc}"
                request.done()
            pending.clear()
            raise
        for sequence in list(active):
            self._end(sequence, active, free, None, "the engine was closed")
        for request in pending:
            request.error = "the engine was closed"
            request.done()

    def _admissible(self, request: BatchRequest) -> bool:
        need = len(request.prompt_ids) + request.max_new_tokens
        if not request.prompt_ids:
            request.error = "the prompt is empty"
        elif need > self.n_ctx:
            request.error = (
                f"prompt ({len(request.prompt_ids)}) + max_new_tokens ({request.max_new_tokens}) "
                f"exceed n_ctx ({self.n_ctx})"
            )
        else:
            return True
        request.done()
        return False

    def _step(self, active: list[_Sequence], free: list[int]) -> None:
        """One ``llama_decode`` of every active sequence, then one token sampled for each that is due one."""
        llama_cpp, batch = self.llama_cpp, self.batch
        token, pos, n_seq_id, seq_id, logits = batch.token, batch.pos, batch.n_seq_id, batch.seq_id, batch.logits
        count = 0
        sampled: list[tuple[_Sequence, int]] = []
        for sequence in active:  # decoding sequences first: one token each, never starved by a prompt
            if sequence.decoding:
                token[count], pos[count], n_seq_id[count] = sequence.request.token_ids[-1], sequence.position, 1
                seq_id[count][0], logits[count] = sequence.slot, True
                sampled.append((sequence, count))
                sequence.position += 1
                count += 1
        for sequence in active:
            if sequence.decoding or count >= self.n_batch:
                continue
            prompt = sequence.request.prompt_ids
            chunk = prompt[sequence.prefilled : sequence.prefilled + self.n_batch - count]
            for offset, token_id in enumerate(chunk):
                token[count], pos[count], n_seq_id[count] = token_id, sequence.prefilled + offset, 1
                seq_id[count][0], logits[count] = sequence.slot, False
                count += 1
            sequence.prefilled += len(chunk)
            if sequence.decoding:
                logits[count - 1] = True
                sampled.append((sequence, count - 1))
                sequence.position = len(prompt)
        batch.n_tokens = count
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            reason = "no room in the KV cache" if status == 1 else f"llama_decode returned {status}"
            for sequence in list(active):
                self._end(sequence, active, free, None, reason)
            return
        clock, sample, is_eog = time.perf_counter, llama_cpp.llama_sampler_sample, llama_cpp.llama_vocab_is_eog
        for sequence, index in sampled:
            request = sequence.request
            token_id = sample(self.sampler, self.ctx, index)
            now = clock()
            if request.stop_at_eos and is_eog(self.vocab, token_id):
                self._end(sequence, active, free, "stop", None)
                continue
            request.token_ids.append(token_id)
            request.token_times.append(now)
            if len(request.token_ids) >= request.max_new_tokens:
                self._end(sequence, active, free, "length", None)

    def _end(
        self, sequence: _Sequence, active: list[_Sequence], free: list[int], finish: str | None, error: Any
    ) -> None:
        self.llama_cpp.llama_memory_seq_rm(self.memory, sequence.slot, -1, -1)
        active.remove(sequence)
        free.append(sequence.slot)
        request = sequence.request
        request.finish_reason, request.error = finish, error
        request.done()
