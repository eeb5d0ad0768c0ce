"""Credentials: from the environment or a URL, sent as the header they stand for, never shown.

A key is read from the environment variable the user names (``api_key_from``), never from a flag
and never stored. A URL may carry one too: ``http://user:password@host`` stands for HTTP Basic
authentication, ``http://KEY@host`` (a user name without a password) and the query parameters
that services use for keys (``?api_key=``, ``?key=``, ``?access_token=``, ``?token=`` ...) for a
bearer key. :func:`split_credentials` takes them out, so that what is stored or printed is the
URL without them, and :func:`redact` removes their values from any text shown to the user (a
server's 401 body may echo the key it refused).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from llmbench.errors import LLMBenchError

KEY_PARAMETERS = frozenset(
    {"api_key", "apikey", "api-key", "key", "access_token", "token", "auth", "auth_token", "x-api-key", "api_token"}
)
"""Query parameters (compared without case) whose value is a credential."""

REDACTED = "***"


@dataclass(frozen=True)
class Credential:
    """A secret and the ``Authorization`` header it stands for; its repr never shows it."""

    scheme: Literal["Bearer", "Basic"]
    secret: str = field(repr=False)
    """The key (Bearer), or ``user:password`` (Basic)."""

    @classmethod
    def bearer(cls, key: str) -> Credential:
        return cls("Bearer", key)

    @classmethod
    def basic(cls, user: str, password: str) -> Credential:
        return cls("Basic", f"{user}:{password}")

    def header(self) -> dict[str, str]:
        if self.scheme == "Basic":
            return {"Authorization": "Basic " + base64.b64encode(self.secret.encode()).decode()}
        return {"Authorization": f"Bearer {self.secret}"}

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every form of the secret that could show up in a server's reply or an error."""
        if self.scheme == "Bearer":
            return (self.secret,)
        password = self.secret.partition(":")[2]
        encoded = base64.b64encode(self.secret.encode()).decode()
        return tuple(s for s in (self.secret, encoded, password) if s)


def as_credential(value: str | Credential | None) -> Credential | None:
    """A credential as given: a :class:`Credential` (from a URL), a key (a bearer key), or none."""
    if value is None or isinstance(value, Credential):
        return value
    return Credential.bearer(str(value)) if str(value) else None


def api_key_from(env_var: str | None) -> str | None:
    """An API key is read from the environment, never from a flag, never stored."""
    if not env_var:
        return None
    value = os.environ.get(env_var)
    if value is None:
        raise LLMBenchError(f"environment variable {env_var} is not set", f"export {env_var}=... or drop --api-key-env")
    return value


def split_credentials(url: str) -> tuple[str, Credential | None]:
    """The URL without its credentials (user info, key query parameters), and the credential they stood for.

    ``user:password@`` is Basic authentication; a lone ``KEY@`` or a key parameter is a bearer key.
    Percent-escapes in them are decoded. A URL with neither comes back unchanged.
    """
    parts = urlsplit(url)
    credential: Credential | None = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, has_password, password = userinfo.partition(":")
        if has_password:
            credential = Credential.basic(unquote(user), unquote(password))
        elif user:
            credential = Credential.bearer(unquote(user))
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(name, value) for name, value in pairs if name.lower() not in KEY_PARAMETERS]
        if len(kept) != len(pairs):
            keys = [value for name, value in pairs if name.lower() in KEY_PARAMETERS and value]
            if credential is None and keys:
                credential = Credential.bearer(keys[0])
            query = urlencode(kept)
    if netloc == parts.netloc and query == parts.query:
        return url, credential
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)), credential


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each secret (and its percent-encoded form) replaced by ``***``."""
    from urllib.parse import quote

    values = {s for secret in secrets if secret for s in (secret, quote(secret, safe=""))}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
