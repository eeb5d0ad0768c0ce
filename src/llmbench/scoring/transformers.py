"""Fast completion log-probs on transformers.

* A prefix every prompt shares (an instruction or few-shot block) runs once.
* Prompts run in batches continuing from that prefix, right-padded (so no query ever faces only
  masked keys), with the output projection computed only at each prompt's last real position.
* A prompt's last logits give every completion's first token: single-token completions need no
  further pass.
* Longer completions of all prompts in a batch run together: each row takes its prompt's cache
  rows (``index_select`` on the batch dimension), continues at its own positions, and masks the
  padding of both its prompt and its completion. A pass holds at most ``max_logits_bytes`` of
  logits (``rows x tokens x vocab x 4``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmbench.scoring._requests import ScoringRequest, shared_prefix_length

DEFAULT_MAX_LOGITS_BYTES = 256 * 2**20
PROMPT_BATCH_TOKENS = 2048
"""Prompt tokens (padded) run in one pass."""


def _cache_from(cache: Any | None, rows: Any) -> Any:
    """A new DynamicCache with the batch rows ``rows`` (a LongTensor) of ``cache``."""
    from transformers import DynamicCache

    copy = DynamicCache()
    if cache is None:
        return copy
    for index, layer in enumerate(cache.layers):
        copy.update(layer.keys.index_select(0, rows), layer.values.index_select(0, rows), index)
    return copy


def _forward(model: Any, ids: Any, cache: Any, mask: Any, positions: Any, start: int, keep: Any = None) -> Any:
    """One pass over ``ids`` appended at cache index ``start``; ``keep`` limits the logits computed."""
    import torch

    length = ids.shape[1]
    extra = {} if keep is None else {"logits_to_keep": keep}
    return model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        cache_position=torch.arange(start, start + length, device=ids.device),
        use_cache=True,
        **extra,
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
            prefix_cache = _cache_from(None, None)
            ids = torch.tensor([list(requests[0].prompt_ids[:prefix_len])], device=device)
            positions = torch.arange(prefix_len, device=device).unsqueeze(0)
            _forward(model, ids, prefix_cache, torch.ones_like(ids), positions, 0, keep=1)
        start = 0
        while start < len(requests):
            end = start + 1
            longest = len(requests[start].prompt_ids) - prefix_len
            while end < len(requests):
                candidate = max(longest, len(requests[end].prompt_ids) - prefix_len)
                if candidate * (end - start + 1) > PROMPT_BATCH_TOKENS:
                    break
                longest = candidate
                end += 1
            results += _score_batch(model, requests[start:end], prefix_cache, prefix_len, max_logits_bytes)
            start = end
    return results


def _score_batch(
    model: Any, requests: Sequence[ScoringRequest], prefix_cache: Any, prefix_len: int, max_logits_bytes: int
) -> list[list[list[float]]]:
    import torch

    device = model.device
    own = [list(r.prompt_ids[prefix_len:]) for r in requests]
    width = max(len(o) for o in own)
    batch = len(requests)
    ids = torch.zeros(batch, width, dtype=torch.long, device=device)
    mask = torch.zeros(batch, prefix_len + width, dtype=torch.long, device=device)
    mask[:, :prefix_len] = 1
    for row, tokens in enumerate(own):
        ids[row, : len(tokens)] = torch.tensor(tokens, device=device)
        mask[row, prefix_len : prefix_len + len(tokens)] = 1
    positions = torch.arange(prefix_len, prefix_len + width, device=device).unsqueeze(0).expand(batch, -1)
    rows = torch.zeros(batch, dtype=torch.long, device=device)
    cache = _cache_from(prefix_cache, rows) if prefix_cache is not None else _cache_from(None, None)
    lasts = sorted({len(o) - 1 for o in own})
    out = _forward(model, ids, cache, mask, positions, prefix_len, keep=torch.tensor(lasts, device=device))
    column = {position: index for index, position in enumerate(lasts)}
    first = [torch.log_softmax(out.logits[row, column[len(o) - 1]].float(), dim=-1) for row, o in enumerate(own)]
    scores: list[list[list[float]]] = [
        [[float(first[i][c.feed[0]])] for c in r.continuations] for i, r in enumerate(requests)
    ]
    pending = [(i, j) for i, r in enumerate(requests) for j, c in enumerate(r.continuations) if len(c.feed) > 1]
    pending.sort(key=lambda item: -len(requests[item[0]].continuations[item[1]].feed))
    vocab = out.logits.shape[-1]
    cursor = 0
    while cursor < len(pending):
        steps = len(requests[pending[cursor][0]].continuations[pending[cursor][1]].feed) - 1
        count = max(1, min(len(pending) - cursor, max_logits_bytes // max(1, steps * vocab * 4)))
        group = pending[cursor : cursor + count]
        cursor += count
        _score_group(model, requests, group, steps, cache, mask, own, prefix_len + width, prefix_len, scores)
    return [
        [row[len(row) - c.n_scored :] for row, c in zip(per_request, r.continuations, strict=True)]
        for per_request, r in zip(scores, requests, strict=True)
    ]


def _score_group(
    model: Any,
    requests: Sequence[ScoringRequest],
    group: Sequence[tuple[int, int]],
    steps: int,
    cache: Any,
    prompt_mask: Any,
    own: Sequence[Sequence[int]],
    cache_len: int,
    prefix_len: int,
    scores: list[list[list[float]]],
) -> None:
    import torch

    device = prompt_mask.device
    rows = torch.tensor([i for i, _ in group], dtype=torch.long, device=device)
    ids = torch.zeros(len(group), steps, dtype=torch.long, device=device)
    completion_mask = torch.zeros(len(group), steps, dtype=torch.long, device=device)
    positions = torch.zeros(len(group), steps, dtype=torch.long, device=device)
    for row, (i, j) in enumerate(group):
        feed = requests[i].continuations[j].feed[:-1]
        ids[row, : len(feed)] = torch.tensor(feed, device=device)
        completion_mask[row, : len(feed)] = 1
        begin = prefix_len + len(own[i])
        positions[row] = torch.arange(begin, begin + steps, device=device)
    mask = torch.cat([prompt_mask.index_select(0, rows), completion_mask], dim=1)
    out = _forward(model, ids, _cache_from(cache, rows), mask, positions, cache_len)
    logprobs = torch.log_softmax(out.logits.float(), dim=-1)
    for row, (i, j) in enumerate(group):
        feed = requests[i].continuations[j].feed
        targets = torch.tensor(feed[1:], device=device)
        scores[i][j] += logprobs[row, torch.arange(len(feed) - 1, device=device), targets].tolist()
