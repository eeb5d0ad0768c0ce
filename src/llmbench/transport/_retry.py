"""When a request may be sent again: the one rule of the ``openai`` backend and the load client.

A benchmark must not hide a server's failures, so a request goes once unless it certainly never
reached the server:

* **not delivered** (``stale_keepalive``): the server had closed the keep-alive connection before
  the request was written to it (servers close idle or finished connections; the client learns it
  only when it writes). The request is sent again on another connection, at most
  :data:`STALE_RESENDS` times, and each attempt is counted and reported with this reason.
* **maybe delivered**: the connection failed after the request was written and before any byte
  of an answer (the server may have read it, even started on it, then dropped or reset the
  connection), or could not be opened. Sent again only when the user allows retries
  (``retries``, default 0), counted, with the failure's kind as the reason.
* **answered**: an HTTP status or any byte of the stream arrived. Never sent again: the answer,
  error or cut-off stream, is the result.
"""

from __future__ import annotations

from llmbench.errors import InvalidOptionError

STALE = "stale_keepalive"
"""The reason of a resend after a keep-alive connection the server had already closed."""
STALE_RESENDS = 3
"""Resends allowed for :data:`STALE` failures, on top of (and apart from) the user's retries."""


def may_resend(reason: str, resent: int, stale: int, retries: int) -> bool:
    """Whether a request that failed for ``reason`` before any answer may go again.

    ``resent`` and ``stale`` count the resends already made for other reasons and for
    :data:`STALE`; ``retries`` is what the user allows for failures the server may have seen.
    """
    if reason == STALE:
        return stale < STALE_RESENDS
    return resent < retries


def check_retries(value: object) -> int:
    """A user's ``retries`` setting: a whole number, 0 or more."""
    retries = -1
    if isinstance(value, int) and not isinstance(value, bool):
        retries = value
    elif isinstance(value, str) and value.strip().isdigit():
        retries = int(value)
    if retries < 0:
        raise InvalidOptionError(
            f"retries must be a whole number, 0 or more, got {value!r}",
            "use retries=0 (never resend a request the server may have seen) or a small count",
        )
    return retries
