"""Where llmbench keeps its data: ``$LLMBENCH_HOME`` or the platform's user data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HOME_ENV_VAR = "LLMBENCH_HOME"


def user_dir() -> Path:
    """The llmbench data directory, created on first use.

    ``LLMBENCH_HOME`` wins; otherwise ``$XDG_DATA_HOME/llmbench`` (``~/.local/share/llmbench``),
    ``~/Library/Application Support/llmbench`` on macOS or ``%APPDATA%\\llmbench`` on Windows.
    """
    override = os.environ.get(HOME_ENV_VAR)
    if override:
        path = Path(override).expanduser()
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Application Support" / "llmbench"
    elif sys.platform == "win32":
        path = Path(os.environ.get("APPDATA", Path.home())) / "llmbench"
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "llmbench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_path() -> Path:
    return user_dir() / "results.db"
