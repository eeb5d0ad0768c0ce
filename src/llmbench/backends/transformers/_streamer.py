"""The one streamer every transformers generation path times its tokens with.

``generate`` calls ``put`` in the generating thread: first with the prompt (or, for a seq2seq
model, the decoder's start token), then with each new token the moment it exists on the host, so
``on_token`` stamps it there. Without ``force`` the first end-of-sequence id ends the text (it is
kept in the returned list, not reported); with ``force`` every token is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any


def timing_streamer(on_token: Callable[[int], None], eos_ids: Collection[int], force: bool) -> tuple[Any, list[int]]:
    """A streamer handing each generated token to ``on_token``, and the list that holds the
    end-of-sequence id once the model ends the text (empty while it has not)."""
    from transformers.generation.streamers import BaseStreamer

    finished: list[int] = []

    class TimingStreamer(BaseStreamer):
        def __init__(self) -> None:
            self.first_seen = False

        def put(self, value: Any) -> None:
            if not self.first_seen:  # the prompt, or the decoder's start token
                self.first_seen = True
                return
            token = int(value.reshape(-1)[0])
            if finished:
                return
            if not force and token in eos_ids:
                finished.append(token)
                return
            on_token(token)

        def end(self) -> None:
            pass

    return TimingStreamer(), finished
