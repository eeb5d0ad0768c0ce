"""A synchronous client of one OpenAI-compatible server (httpx): the ``openai`` backend's, and calibration's.

It sends the :class:`~llmbench.transport.Credential`'s header, resends by the one retry rule
(:mod:`llmbench.transport._retry`) and counts every attempt, and turns failures into one-line
:class:`~llmbench.errors.ServerError`s with the secrets taken out of any text the server sent.
(The load client's asynchronous requests are aiohttp's, in ``llmbench.serving``, on the same rule.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from llmbench.errors import ServerError
from llmbench.transport._bodies import Endpoint, count_body, encode, usage_prompt_tokens
from llmbench.transport._credentials import Credential, redact
from llmbench.transport._retry import STALE, may_resend

_DETAIL_CHARS = 300


def api_root(url: str) -> str:
    """A server's root URL: no trailing slash, no ``/v1`` (paths add it); a query string stays at the end."""
    base, mark, query = url.partition("?")
    return base.rstrip("/").removesuffix("/v1") + mark + query


def join_url(root: str, path: str) -> str:
    """``root`` (from :func:`api_root`) with ``path`` added before its query string, if any."""
    base, mark, query = root.partition("?")
    return base + path + mark + query


def endpoint_path(endpoint: Endpoint) -> str:
    return "/v1/completions" if endpoint == "completions" else "/v1/chat/completions"


class SyncClient:
    """Requests to one server, one at a time."""

    def __init__(
        self,
        url: str,
        credential: Credential | None = None,
        *,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        retries: int = 0,
    ) -> None:
        import httpx

        self.root = api_root(url)
        self.secrets: tuple[str, ...] = credential.secrets if credential is not None else ()
        self.headers: dict[str, str] = credential.header() if credential is not None else {}
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.client = httpx.Client(timeout=self.timeout, headers=self.headers)
        self.retries = retries
        self.attempts = 0
        """Every request sent, resends included."""
        self.resends: dict[str, int] = {}
        """Resends by reason (``stale_keepalive``, ``disconnect``, ``connect``)."""

    def stop_reusing_connections(self) -> None:
        """A new connection for every request (for servers that close theirs after each response)."""
        import httpx

        self.client.close()
        limits = httpx.Limits(max_keepalive_connections=0)
        self.client = httpx.Client(timeout=self.timeout, headers=self.headers, limits=limits)

    # -- sending --------------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        """The response, headers read and body not; resent only as the retry rule allows."""
        import httpx

        content = encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        request = self.client.build_request(method, join_url(self.root, path), content=content, headers=headers)
        resent = stale = 0
        while True:
            self.attempts += 1
            try:
                return self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                reason = _failure_reason(exc)
                if reason is None or not may_resend(reason, resent, stale, self.retries):
                    raise
                stale, resent = (stale + 1, resent) if reason == STALE else (stale, resent + 1)
                self.resends[reason] = self.resends.get(reason, 0) + 1

    def _check_status(self, response: Any, method: str, path: str, refused_hint: str | None = None) -> None:
        if response.status_code == 200:
            return
        detail = self.redact(response.read().decode("utf-8", "replace").strip()[:_DETAIL_CHARS])
        if refused_hint is not None and response.status_code in (400, 422, 500):
            hint = refused_hint
        elif response.status_code in (401, 403):
            hint = "check the API key: -o api_key_env=VAR names the variable that holds it"
        else:
            hint = "check the model name (-o model=...) and the server's log"
        raise ServerError(f"{method} {path} returned HTTP {response.status_code}: {detail}", hint)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets) if self.secrets else text

    def json(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """A request whose answer is one JSON document."""
        import httpx

        try:
            response = self._send(method, path, body)
            try:
                self._check_status(response, method, path)
                response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise ServerError(
                self.redact(f"cannot reach {self.root} ({type(exc).__name__}: {exc})"),
                "start the server, or check the URL: llmbench run http://HOST:PORT",
            ) from None
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"{method} {path} did not return JSON", "check the URL and the server's log") from None

    @contextmanager
    def stream(self, path: str, body: Mapping[str, Any], refused_hint: str | None = None) -> Iterator[Iterator[bytes]]:
        """The raw reads of a streamed POST; HTTP errors become one-line :class:`ServerError`s
        (with ``refused_hint`` as the hint when the server refuses the request itself: 400, 422, 500)."""
        import httpx

        try:
            response = self._send("POST", path, body)
            try:
                self._check_status(response, "POST", path, refused_hint)
                yield response.iter_raw()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise ServerError(
                self.redact(f"the stream from {self.root} failed ({type(exc).__name__}: {exc})"),
                "start the server or check the URL and the server's log",
            ) from None

    def count_prompt_tokens(self, text: str, *, endpoint: Endpoint = "completions", model: str | None = None) -> int:
        """How many tokens the server counts in ``text`` (``usage.prompt_tokens`` of a one-token request)."""
        reply = self.json("POST", endpoint_path(endpoint), count_body(text, endpoint=endpoint, model=model))
        counted = usage_prompt_tokens(reply)
        if counted is None:
            raise ServerError(
                f"{self.root} reports no usage.prompt_tokens, so a text prompt's length cannot be checked",
                "send token ids instead if the server takes them (-o prompt_format=ids), or pass --prompt",
            )
        return counted

    def close(self) -> None:
        self.client.close()


def _failure_reason(exc: BaseException) -> str | None:
    """Why a request got no answer, for the retry rule; None: not to be sent again at all."""
    import httpx

    if isinstance(exc, httpx.WriteError):
        return STALE  # the request could not be written: the server closed the connection first
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return "connect"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return "disconnect"
    return None
