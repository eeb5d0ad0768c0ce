"""Fast completion log-probs on llama.cpp, read from logits (never from ``create_completion``).

``create_completion(echo=True, logprobs=...)`` shifts prompt log-probs by one position in current
llama-cpp-python (upstream issue #1983), so this module talks to llama.cpp's batch API directly:

* a scoring context of its own beside the backend's (same weights), with several sequences over
  one unified KV cache, kept in f32 unless the backend's ``type_k``/``type_v`` say otherwise;
* the shared prefix and each prompt are decoded once in sequence 0 (a prompt replaces only the
  part after the shared prefix);
* each group of completions gets sequences 1..n that share the prompt's KV cells
  (``llama_memory_seq_cp``, no copy of the tensors), and all their tokens go to llama.cpp in one
  batch, each requesting its logits;
* a completion's first token is read from the prompt's last logits; single-token completions
  cost no decode at all.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmbench.errors import InvalidOptionError, LLMBenchError
from llmbench.scoring._requests import ScoringRequest, check_context, shared_prefix_length

MAX_SEQUENCES = 16


def _log_softmax(row: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    row = row.astype(np.float64)
    top = row.max()
    return row - top - np.log(np.exp(row - top).sum())  # type: ignore[no-any-return]


class Scorer:
    """A llama.cpp context for scoring, bound to a loaded ``llama_cpp.Llama``."""

    def __init__(
        self, llm: Any, n_ctx: int, n_batch: int = 512, threads: int | None = None, kv_f32: bool = True
    ) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.llm = llm
        # The backend's own context settings (threads, attention kernel, KV types), with sequences added.
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        # llama.cpp clamps n_batch to n_ctx and reserves an output row per sequence within it
        # (GGML_ASSERT(n_outputs_max <= cparams.n_outputs_max) aborts the process otherwise).
        n_batch = min(n_batch, n_ctx)
        n_seq = min(MAX_SEQUENCES, n_batch)
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.kv_unified = True
        if kv_f32:
            # An f16 KV cache makes log-probs depend on how tokens are split into batches (up to
            # 0.02 nats on SmolLM2); f32 makes the fast path match a plain evaluation exactly.
            params.type_k = params.type_v = llama_cpp.GGML_TYPE_F32
        if threads:
            params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise LLMBenchError("llama.cpp could not create a scoring context", "lower --n-ctx or free memory")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_seq = n_seq
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llm._model.vocab)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq)
        self.seq0: list[int] = []

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self.close()

    # -- batch plumbing ---------------------------------------------------------------------------

    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, sequence, wants_logits) entries as one batch."""
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, position, sequence, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = logits
        status = self.lib.llama_decode(self.ctx, batch)
        if status != 0:
            raise LLMBenchError(f"llama_decode failed with status {status}", "raise --n-ctx or lower the batch")

    def _logits(self, index: int) -> np.ndarray[Any, Any]:
        pointer = self.lib.llama_get_logits_ith(self.ctx, index)
        array = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))
        return array.copy()

    def _extend_seq0(self, ids: Sequence[int]) -> np.ndarray[Any, Any]:
        """Make sequence 0 hold exactly ``ids`` (reusing its common prefix); return the last logits."""
        keep = 0
        for a, b in zip(self.seq0, ids, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(ids) - 1)  # the last token is always decoded again, for its logits
        self.lib.llama_memory_seq_rm(self.memory, 0, keep, -1)
        self.seq0 = list(ids[:keep])
        todo = list(ids[keep:])
        last_row = 0
        for start in range(0, len(todo), self.n_batch):
            chunk = todo[start : start + self.n_batch]
            final = start + len(chunk) == len(todo)
            self._decode([(t, keep + start + j, 0, final and j == len(chunk) - 1) for j, t in enumerate(chunk)])
            last_row = len(chunk) - 1
        self.seq0 = list(ids)
        return self._logits(last_row)

    # -- scoring ----------------------------------------------------------------------------------

    def token_logprobs(self, requests: Sequence[ScoringRequest]) -> list[list[list[float]]]:
        check_context(requests, self.n_ctx)  # all of them, before anything is decoded
        prefix_len = shared_prefix_length(requests)
        if prefix_len:
            self._extend_seq0(requests[0].prompt_ids[: prefix_len + 1])
        results = []
        for request in requests:
            prompt = list(request.prompt_ids)
            last = _log_softmax(self._extend_seq0(prompt))
            results.append(self._continuations(request, last))
        return results

    def _continuations(self, request: ScoringRequest, last: np.ndarray[Any, Any]) -> list[list[float]]:
        start = len(request.prompt_ids)
        # Sequences 1..n share the prompt's KV cells, but each continuation's own tokens take new
        # cells of the one unified cache: a group must fit in what the prompt leaves of n_ctx.
        budget = min(self.n_batch, self.n_ctx - start)
        scores: list[list[float]] = [[float(last[c.feed[0]])] for c in request.continuations]
        pending = [i for i, c in enumerate(request.continuations) if len(c.feed) > 1]
        if pending and self.n_seq < 2:
            raise InvalidOptionError(f"a scoring context of {self.n_ctx} tokens is too small", "raise --n-ctx")
        while pending:
            group: list[int] = []
            tokens = 0
            while pending and len(group) < self.n_seq - 1:
                need = len(request.continuations[pending[0]].feed) - 1
                if group and tokens + need > budget:
                    break
                if need > budget:
                    raise InvalidOptionError(f"a completion of {need + 1} tokens exceeds n_batch {self.n_batch}")
                group.append(pending.pop(0))
                tokens += need
            entries: list[tuple[int, int, int, bool]] = []
            rows: list[tuple[int, int]] = []  # (continuation index, first batch row)
            for slot, index in enumerate(group, start=1):
                self.lib.llama_memory_seq_cp(self.memory, 0, slot, 0, start)
                feed = request.continuations[index].feed[:-1]
                rows.append((index, len(entries)))
                entries += [(t, start + j, slot, True) for j, t in enumerate(feed)]
            self._decode(entries)
            # Every entry asked for logits, so output row k is batch entry k: one view, one log-softmax.
            pointer = self.lib.llama_get_logits(self.ctx)
            logits = np.ctypeslib.as_array(
                ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(len(entries), self.n_vocab)
            ).astype(np.float64)
            top = logits.max(axis=1, keepdims=True)
            logprobs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
            for index, first in rows:
                feed = request.continuations[index].feed
                for j in range(1, len(feed)):
                    scores[index].append(float(logprobs[first + j - 1, feed[j]]))
            for slot in range(1, len(group) + 1):
                self.lib.llama_memory_seq_rm(self.memory, slot, -1, -1)
        return [s[len(s) - c.n_scored :] for s, c in zip(scores, request.continuations, strict=True)]
