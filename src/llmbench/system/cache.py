"""A pure scan of where models lie on disk: the Hugging Face cache and folders of GGUF files.

:func:`scan_models` never modifies anything; it returns frozen dataclasses, with damage in the
Hugging Face cache collected as warnings rather than raised. Deleting is a separate
:class:`DeletionPlan`, built first (it says what would be freed) and executed only on request.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmbench.errors import InvalidOptionError, LLMBenchError

EntryKind = Literal["model", "dataset", "space", "kernel", "gguf"]


@dataclass(frozen=True)
class CacheEntry:
    kind: EntryKind
    name: str
    """Repo id, or the GGUF file's path."""
    path: Path
    size_bytes: int
    revisions: tuple[str, ...]
    refs: tuple[str, ...]
    last_accessed: float | None
    last_modified: float | None
    files: int
    incomplete_bytes: int = 0
    """Bytes of unfinished downloads (``*.incomplete`` blobs) for this repo."""


@dataclass(frozen=True)
class CacheScan:
    entries: tuple[CacheEntry, ...]
    warnings: tuple[str, ...]
    hf_cache_dir: Path | None

    @property
    def total_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self.entries)


def scan_models(hf_cache_dir: str | Path | None = None, gguf_dirs: Iterable[str | Path] = ()) -> CacheScan:
    """Scan the Hugging Face cache (``huggingface_hub.scan_cache_dir``) and GGUF folders."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    entries: list[CacheEntry] = []
    warnings: list[str] = []
    cache_dir: Path | None = None
    try:
        info = scan_cache_dir(hf_cache_dir)
    except CacheNotFound as exc:
        warnings.append(f"no Hugging Face cache at {exc.cache_dir}")
    else:
        cache_dir = Path(info.cache_dir) if info.cache_dir else None
        incomplete = _incomplete_by_repo(info.incomplete_files if hasattr(info, "incomplete_files") else ())
        for repo in info.repos:
            refs = tuple(sorted(ref for revision in repo.revisions for ref in revision.refs))
            entries.append(
                CacheEntry(
                    kind=repo.repo_type,
                    name=repo.repo_id,
                    path=Path(repo.repo_path),
                    size_bytes=int(repo.size_on_disk),
                    revisions=tuple(sorted(revision.commit_hash for revision in repo.revisions)),
                    refs=refs,
                    last_accessed=repo.last_accessed,
                    last_modified=repo.last_modified,
                    files=int(repo.nb_files),
                    incomplete_bytes=incomplete.get(Path(repo.repo_path), 0),
                )
            )
        warnings.extend(str(warning) for warning in info.warnings)
    for folder in gguf_dirs:
        entries.extend(_scan_gguf_folder(Path(folder), warnings))
    return CacheScan(tuple(entries), tuple(warnings), cache_dir)


def _incomplete_by_repo(files: Iterable[Any]) -> dict[Path, int]:
    sizes: dict[Path, int] = {}
    for item in files:
        path = Path(getattr(item, "file_path", item))
        repo = path.parent.parent  # <repo>/blobs/<hash>.incomplete
        try:
            sizes[repo] = sizes.get(repo, 0) + path.stat().st_size
        except OSError:
            continue
    return sizes


def _scan_gguf_folder(folder: Path, warnings: list[str]) -> list[CacheEntry]:
    if not folder.is_dir():
        warnings.append(f"{folder} is not a folder")
        return []
    found = []
    for path in sorted(folder.rglob("*.gguf")):
        try:
            stat = path.stat()
        except OSError as exc:
            warnings.append(f"{path}: {exc.strerror or exc}")
            continue
        found.append(CacheEntry("gguf", str(path), path, stat.st_size, (), (), stat.st_atime, stat.st_mtime, 1))
    return found


# -- sorting and filtering ----------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip
_FILTER = re.compile(r"^\s*(size|name|kind|accessed)\s*(>=|<=|>|<|=|~)\s*(.+?)\s*$", re.I)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le, "=": operator.eq,
}  # fmt: skip


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]I?B|B)?\s*", text, re.I)
    if not match:
        raise InvalidOptionError(f"cannot read size {text!r}", "write it like 1GB, 500MB or 2GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").upper()])


def make_filter(expression: str) -> Callable[[CacheEntry], bool]:
    """``size>1GB``, ``size<=500MiB``, ``name~llama``, ``kind=gguf``, ``accessed>30d`` (days ago)."""
    import time

    match = _FILTER.match(expression)
    if not match:
        raise InvalidOptionError(
            f"cannot read filter {expression!r}", "use size>1GB, name~llama, kind=gguf or accessed>30d"
        )
    field, op, value = match.group(1).lower(), match.group(2), match.group(3)
    if field == "name":
        if op == "~":
            return lambda entry: value.lower() in entry.name.lower()
        if op == "=":
            return lambda entry: entry.name == value
    elif field == "kind" and op == "=":
        return lambda entry: entry.kind == value
    elif field == "size" and op in _OPS:
        limit = parse_size(value)
        return lambda entry: _OPS[op](entry.size_bytes, limit)
    elif field == "accessed" and op in _OPS and value.lower().endswith("d"):
        days = float(value[:-1])
        now = time.time()
        return lambda entry: entry.last_accessed is not None and _OPS[op]((now - entry.last_accessed) / 86400, days)
    raise InvalidOptionError(f"filter {expression!r} does not apply {op!r} to {field}", "see llmbench cache --help")


SORT_KEYS: dict[str, Callable[[CacheEntry], Any]] = {
    "size": lambda entry: -entry.size_bytes,
    "name": lambda entry: entry.name.lower(),
    "accessed": lambda entry: -(entry.last_accessed or 0),
    "modified": lambda entry: -(entry.last_modified or 0),
}


def select(scan: CacheScan, filters: Sequence[str] = (), sort: str = "size") -> list[CacheEntry]:
    predicates = [make_filter(expression) for expression in filters]
    if sort not in SORT_KEYS:
        raise InvalidOptionError(f"unknown sort key {sort!r}", f"choose one of: {', '.join(SORT_KEYS)}")
    chosen = [entry for entry in scan.entries if all(p(entry) for p in predicates)]
    return sorted(chosen, key=SORT_KEYS[sort])


# -- deletion -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeletionPlan:
    """What ``llmbench cache rm`` would delete; nothing happens until :meth:`execute`."""

    targets: tuple[str, ...]
    freed_bytes: int
    hf_revisions: tuple[str, ...]
    gguf_files: tuple[Path, ...]
    _strategy: Any = None

    def execute(self) -> None:
        if self._strategy is not None:
            self._strategy.execute()
        for path in self.gguf_files:
            path.unlink(missing_ok=True)


def plan_deletion(targets: Sequence[str], hf_cache_dir: str | Path | None = None) -> DeletionPlan:
    """Targets are repo ids (all their revisions), revision hashes, or GGUF file paths."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info: Any = scan_cache_dir(hf_cache_dir)
    except CacheNotFound:
        info = None
    revisions: list[str] = []
    ggufs: list[Path] = []
    freed = 0
    for target in targets:
        path = Path(target).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            ggufs.append(path)
            freed += path.stat().st_size
            continue
        matched = []
        if info is not None:
            for repo in info.repos:
                if repo.repo_id == target:
                    matched += [r.commit_hash for r in repo.revisions]
                else:
                    matched += [r.commit_hash for r in repo.revisions if r.commit_hash.startswith(target)]
        if not matched:
            raise LLMBenchError(f"nothing in the cache matches {target!r}", "list what is there with: llmbench cache")
        revisions += matched
    strategy = info.delete_revisions(*revisions) if revisions and info is not None else None
    if strategy is not None:
        freed += int(strategy.expected_freed_size)
    return DeletionPlan(tuple(targets), freed, tuple(revisions), tuple(ggufs), strategy)
