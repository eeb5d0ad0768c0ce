"""Fast completion log-probs on transformers: each prompt runs once, its KV cache serves all
its completions in memory-bounded batches, and a prefix every prompt shares runs once in all.

* The shared prefix (an instruction or few-shot block) is run once; each prompt continues from a
  copy of its cache.
* A prompt's last logits give every completion's first token: single-token completions need no
  further pass.
* Longer completions are right-padded into batches; the prompt's cache is expanded over the
  batch, positions continue from the prompt, and the padded tail is masked. A batch holds at
  most ``max_logits_bytes`` of logits (``batch x tokens x vocab x 4``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmbench.scoring._requests import ScoringRequest, shared_prefix_length

DEFAULT_MAX_LOGITS_BYTES = 256 * 2**20


def _cache_copy(cache: Any, batch: int) -> Any:
    """A new DynamicCache holding ``cache``'s keys and values repeated ``batch`` times."""
    from transformers import DynamicCache

    copy = DynamicCache()
    for index, layer in enumerate(cache.layers):
        keys, values = layer.keys, layer.values
        if batch > 1:
            keys = keys.expand(batch, *keys.shape[1:]).contiguous()
            values = values.expand(batch, *values.shape[1:]).contiguous()
        copy.update(keys, values, index)
    return copy


def _forward(model: Any, ids: Any, cache: Any, start: int, mask: Any = None) -> Any:
    import torch

    batch, length = ids.shape
    positions = torch.arange(start, start + length, device=ids.device).unsqueeze(0).expand(batch, -1)
    if mask is None:
        mask = torch.ones(batch, start + length, dtype=torch.long, device=ids.device)
    return model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        cache_position=torch.arange(start, start + length, device=ids.device),
        use_cache=True,
    )


def token_logprobs(
    model: Any, requests: Sequence[ScoringRequest], max_logits_bytes: int = DEFAULT_MAX_LOGITS_BYTES
) -> list[list[list[float]]]:
    """Per request, per continuation: the log-probs of its scored tokens."""
    import torch

    device = model.device
    results: list[list[list[float]]] = []
    with torch.inference_mode():
        prefix_len = shared_prefix_length(requests)
        prefix_cache = None
        if prefix_len:
            prefix_cache = _cache_copy_from_run(model, requests[0].prompt_ids[:prefix_len], device)
        for request in requests:
            if prefix_cache is not None:
                cache = _cache_copy(prefix_cache, 1)
                own = request.prompt_ids[prefix_len:]
                out = _forward(model, torch.tensor([own], device=device), cache, prefix_len)
            else:
                from transformers import DynamicCache

                cache = DynamicCache()
                out = _forward(model, torch.tensor([request.prompt_ids], device=device), cache, 0)
            last = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            results.append(_score_continuations(model, request, cache, last, max_logits_bytes))
    return results


def _cache_copy_from_run(model: Any, ids: Sequence[int], device: Any) -> Any:
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    _forward(model, torch.tensor([list(ids)], device=device), cache, 0)
    return cache


def _score_continuations(
    model: Any, request: ScoringRequest, cache: Any, last: Any, max_logits_bytes: int
) -> list[list[float]]:
    import torch

    device = model.device
    start = len(request.prompt_ids)
    vocab = last.shape[-1]
    scores: list[list[float] | None] = [None] * len(request.continuations)
    longer: list[int] = []
    for index, continuation in enumerate(request.continuations):
        if len(continuation.feed) == 1:
            scores[index] = [float(last[continuation.feed[0]])]
        else:
            longer.append(index)
    # Longest first so that padding within a batch stays small.
    longer.sort(key=lambda i: -len(request.continuations[i].feed))
    position = 0
    while position < len(longer):
        width = len(request.continuations[longer[position]].feed) - 1
        batch = max(1, min(len(longer) - position, max_logits_bytes // max(1, width * vocab * 4)))
        chosen = longer[position : position + batch]
        position += batch
        ids = torch.zeros(len(chosen), width, dtype=torch.long, device=device)
        mask = torch.zeros(len(chosen), start + width, dtype=torch.long, device=device)
        mask[:, :start] = 1
        for row, index in enumerate(chosen):
            feed = request.continuations[index].feed[:-1]
            ids[row, : len(feed)] = torch.tensor(feed, device=device)
            mask[row, start : start + len(feed)] = 1
        out = _forward(model, ids, _cache_copy(cache, len(chosen)), start, mask)
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)
        for row, index in enumerate(chosen):
            continuation = request.continuations[index]
            feed = continuation.feed
            steps = [float(last[feed[0]])]
            targets = torch.tensor(feed[1:], device=device)
            steps += logprobs[row, torch.arange(len(feed) - 1, device=device), targets].tolist()
            scores[index] = steps
    return [s[len(s) - c.n_scored :] for s, c in zip(scores, request.continuations, strict=True) if s is not None]
