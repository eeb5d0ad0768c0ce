"""Whether a server closes its connections after each response without saying so.

Some servers answer ``Keep-Alive`` and then close the connection a few milliseconds after a
streamed response (llama.cpp's ``llama-server`` does). A client that reuses the connection at
once writes its next request into a socket the server is closing: the request fails with no
answer, and the client cannot tell that failure from a server that read the request and dropped
it, so by the retry rule it may not send it again. Against such a server the clients open a new
connection for every request instead (which the server imposes anyway), and no request meets a
closed connection. :func:`closes_after_response` finds out with one short request, before any
measurement, by watching the connection for a moment after the response.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

WAIT_S = 0.25
"""How long the connection is watched after the response (llama-server closes within ~50 ms)."""


def closes_after_response(
    url: str, body: bytes, headers: Mapping[str, str] | None = None, *, timeout_s: float = 30.0, wait_s: float = WAIT_S
) -> bool:
    """POST ``body`` to ``url``, read the whole answer, and say whether the server then closed the
    connection within ``wait_s`` although it did not announce it (``Connection: close``).

    Any failure (no server, an HTTP error, TLS trouble) answers False: the requests that follow
    meet the same failure and report it.
    """
    import http.client
    import select

    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = kind(parts.hostname or "localhost", parts.port, timeout=timeout_s)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        response.read()
        sock = connection.sock
        if response.will_close or response.status != 200 or sock is None:
            return False
        readable, _, _ = select.select([sock], [], [], wait_s)
        return bool(readable) and sock.recv(1) == b""
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        connection.close()
