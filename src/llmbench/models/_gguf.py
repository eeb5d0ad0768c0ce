"""A fast, validating reader of GGUF headers: metadata and tensor table, no tensor data.

``gguf.GGUFReader`` builds numpy views of every field (seconds for a 49k-token vocabulary);
this reader walks the header once with ``struct`` over an ``mmap`` and keeps long arrays (the
vocabulary, merges) as a length only. It checks what a truncated or corrupt file gets wrong:
the magic, the version, counts that cannot fit in the file, and tensor data that ends past the
file's end. Type codes and block sizes come from the ``gguf`` package.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidModelError

MAGIC = b"GGUF"
_ARRAY_KEEP = 64
"""Arrays longer than this are recorded as ``{"type": ..., "length": n}``."""
_MAX_NESTING = 8
"""Arrays of arrays deeper than this are corrupt (the format's writers nest at most two levels)."""

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: str
    offset: int
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    file_size: int

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return str(value) if value is not None else None


class _Cursor:
    def __init__(self, buffer: mmap.mmap, path: Path) -> None:
        self.buffer = buffer
        self.position = 0
        self.path = path
        self.nesting = 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.position + size > len(self.buffer):
            raise _Truncated
        (value,) = struct.unpack_from(fmt, self.buffer, self.position)
        self.position += size
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        end = self.position + length
        if end > len(self.buffer):
            raise _Truncated
        raw = self.buffer[self.position : end]
        self.position = end
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.unpack("<Q")
        self.position += length
        if self.position > len(self.buffer):
            raise _Truncated

    def value(self, value_type: int) -> Any:
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            if self.nesting >= _MAX_NESTING:
                raise _Corrupt(f"arrays nested more than {_MAX_NESTING} levels deep")
            item_type = self.unpack("<I")
            length = self.unpack("<Q")
            self.nesting += 1
            try:
                if length > _ARRAY_KEEP:
                    self._skip_array(item_type, length)
                    return {"type": _type_name(item_type), "length": length}
                return [self.value(item_type) for _ in range(length)]
            finally:
                self.nesting -= 1
        fmt = _SCALARS.get(value_type)
        if fmt is None:
            raise _Corrupt(f"unknown metadata value type {value_type}")
        return self.unpack(fmt)

    def _skip_array(self, item_type: int, length: int) -> None:
        if item_type == _STRING:
            for _ in range(length):
                self.skip_string()
        elif item_type == _ARRAY:
            for _ in range(length):
                self.value(_ARRAY)
        else:
            fmt = _SCALARS.get(item_type)
            if fmt is None:
                raise _Corrupt(f"unknown array item type {item_type}")
            self.position += struct.calcsize(fmt) * length
            if self.position > len(self.buffer):
                raise _Truncated


class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(code: int) -> str:
    from gguf import GGUFValueType

    try:
        return GGUFValueType(code).name.lower()
    except ValueError:
        return str(code)


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse and validate the header of the GGUF file at ``path``."""
    path = Path(path)
    fix = "re-download or re-convert the model"
    try:
        with path.open("rb") as handle:
            if path.stat().st_size < 24:
                raise InvalidModelError(f"{path} is too small to be a GGUF file", fix)
            buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise InvalidModelError(
            f"cannot read {path} ({exc.strerror or exc})", "check the path and permissions"
        ) from None
    try:
        return _parse(buffer, path)
    except _Truncated:
        raise InvalidModelError(f"{path} is a truncated GGUF file (its header runs past the end)", fix) from None
    except _Corrupt as exc:
        raise InvalidModelError(f"{path} is a corrupt GGUF file ({exc})", fix) from None
    finally:
        buffer.close()


def _parse(buffer: mmap.mmap, path: Path) -> GGUFHeader:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if buffer[:4] != MAGIC:
        raise InvalidModelError(
            f"{path} is not a GGUF file (it starts with {bytes(buffer[:4])!r}, not b'GGUF')",
            "pass a .gguf model file or a Hugging Face model folder",
        )
    cursor = _Cursor(buffer, path)
    cursor.position = 4
    version = cursor.unpack("<I")
    if version not in (1, 2, 3):
        raise _Corrupt(f"unsupported GGUF version {version}")
    n_tensors = cursor.unpack("<Q")
    n_kv = cursor.unpack("<Q")
    if n_tensors > len(buffer) // 24 or n_kv > len(buffer) // 12:
        raise _Corrupt(f"implausible counts ({n_tensors} tensors, {n_kv} metadata keys)")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.unpack("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = cursor.string()
        n_dims = cursor.unpack("<I")
        if n_dims > 8:
            raise _Corrupt(f"tensor {_brief(name)} has {n_dims} dimensions")
        shape = tuple(cursor.unpack("<Q") for _ in range(n_dims))
        type_code = cursor.unpack("<I")
        offset = cursor.unpack("<Q")
        try:
            qtype = GGMLQuantizationType(type_code)
            block, block_bytes = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise _Corrupt(f"tensor {_brief(name)} has unknown type {type_code}") from None
        n_elements = 1
        for dim in shape:
            n_elements *= dim
        tensors.append(TensorInfo(name, shape, qtype.name, offset, n_elements, n_elements // block * block_bytes))
    alignment = metadata.get("general.alignment", 32)
    if type(alignment) is not int or not 1 <= alignment <= 1 << 20:
        raise _Corrupt(f"general.alignment is {_brief(alignment)}, not a whole number of bytes from 1 to 1 MiB")
    data_offset = -(-cursor.position // alignment) * alignment
    end = max((t.offset + t.n_bytes for t in tensors), default=0)
    if tensors and data_offset + end > len(buffer):  # a vocab-only file may end right after its header
        raise _Truncated
    return GGUFHeader(path, version, metadata, tuple(tensors), data_offset, len(buffer))
