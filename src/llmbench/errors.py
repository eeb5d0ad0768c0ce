"""The one error type users see.

Every failure a user can fix (a missing model, a bad option, an absent extra) is raised as a
:class:`LLMBenchError` carrying a short message and a hint that names the next step. The CLI
translates it once, at the top, into a single line and exit code 2 (see ``llmbench.cli``).
"""

from __future__ import annotations


class LLMBenchError(Exception):
    """A user-facing error: ``message`` says what is wrong, ``hint`` how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ModelNotFoundError(LLMBenchError):
    """The model argument names nothing that exists locally."""


class InvalidModelError(LLMBenchError):
    """The model exists but cannot be read (corrupt GGUF, folder without config.json, ...)."""


class BackendUnavailableError(LLMBenchError):
    """The backend is unknown, or its optional dependency is not installed."""


class InvalidOptionError(LLMBenchError):
    """A generation or load option has a value the backend cannot take."""


class ServerError(LLMBenchError):
    """A model server could not be reached, refused a request, or sent something unreadable."""


def missing_extra(package: str, extra: str) -> BackendUnavailableError:
    """The error for an optional dependency that is not installed, with the install command."""
    return BackendUnavailableError(
        f"{package} is not installed",
        f"install it with: pip install 'llmbench[{extra}]'",
    )
