"""Codes in a file: a small versioned header, then every code in exactly bits_per_code bits.

    save(path, codes, bits_per_code, meta=None)   codes: integer tensor, any shape, 0 <= code < 2**bits_per_code
    codes, meta = load(path)                       int64, same shape; meta as saved (a JSON-able dict or None)

The file layout (version 1), the errors load raises and the atomic write: docs/file-format.md,
the format's one description; this module implements it (_HEADER below is its first 16 bytes).
"""

import json
import math
import os
import struct
import uuid
import zlib
from typing import Any, Iterable, Optional, Tuple

import torch
from torch import Tensor

from .bits import pack_bits, to_bits, to_decimal, unpack_bits

MAGIC = b"\x89BCX"
VERSION = 1
MAX_BITS = 63  # a code must fit in int64
_HEADER = struct.Struct("<4sHBBII")  # magic, version, bits_per_code, ndim, meta_length, crc32
_CHUNK = 1 << 15  # codes packed per step: a multiple of 8, so every chunk ends on a byte boundary
_INTEGER_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class CodecError(ValueError):
    """A file that is not a valid codes file: truncated, foreign, of an unsupported version,
    of the wrong size or corrupted. The message says which."""


def save(path, codes: Tensor, bits_per_code: int, meta: Optional[dict] = None) -> None:
    """Writes codes (an integer tensor of any shape, every value in [0, 2**bits_per_code)) to
    path, each in exactly bits_per_code bits, atomically. meta: None or a dict that survives
    JSON unchanged (string keys; lists, not tuples)."""
    _check_width(bits_per_code)
    if not isinstance(codes, Tensor) or codes.dtype not in _INTEGER_DTYPES:
        got = codes.dtype if isinstance(codes, Tensor) else type(codes).__name__
        raise TypeError(f"codec.save: codes must be an integer tensor (bool, uint8, int8..int64), got {got}")
    if codes.dim() > 255:
        raise ValueError(f"codec.save: codes may have at most 255 dims, got {codes.dim()}")
    flat = codes.detach().reshape(-1).to("cpu", torch.int64)
    if flat.numel():
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high >= 1 << bits_per_code:
            raise ValueError(
                f"codec.save: codes must lie in [0, 2**{bits_per_code}) for bits_per_code={bits_per_code}, "
                f"got values in [{low}, {high}]"
            )
    meta_bytes = _encode_meta(meta)
    shape = struct.pack(f"<{codes.dim()}Q", *codes.shape)
    payload = _pack(flat, bits_per_code)
    crc = zlib.crc32(payload, zlib.crc32(meta_bytes, zlib.crc32(shape)))
    header = _HEADER.pack(MAGIC, VERSION, bits_per_code, codes.dim(), len(meta_bytes), crc)
    _write_atomic(path, (header, shape, meta_bytes, payload))


def load(path) -> Tuple[Tensor, Any]:
    """Reads a file written by save: (codes int64 of the saved shape, meta). Raises CodecError
    for anything but a complete, intact file of a supported version."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_HEADER.size)
        if head[: len(MAGIC)] != MAGIC[: len(head)]:
            raise CodecError(f"{path}: not a bitcodes codes file (starts with {head[:len(MAGIC)]!r}, expected {MAGIC!r})")
        if len(head) < 6:
            raise CodecError(f"{path}: truncated: {size} bytes, shorter than the {_HEADER.size}-byte header")
        version = struct.unpack_from("<H", head, 4)[0]
        if version != VERSION:
            raise CodecError(f"{path}: unsupported version {version} (this reader reads version {VERSION})")
        if len(head) < _HEADER.size:
            raise CodecError(f"{path}: truncated: {size} bytes, shorter than the {_HEADER.size}-byte header")
        _, _, bits_per_code, ndim, meta_length, crc = _HEADER.unpack(head)
        if not 1 <= bits_per_code <= MAX_BITS:
            raise CodecError(f"{path}: corrupt header: bits_per_code is {bits_per_code}, expected 1..{MAX_BITS}")
        shape_bytes = f.read(8 * ndim)
        if len(shape_bytes) < 8 * ndim:
            raise CodecError(f"{path}: truncated: {size} bytes, the header and its {ndim}-dim shape need {_HEADER.size + 8 * ndim}")
        shape = struct.unpack(f"<{ndim}Q", shape_bytes)
        numel = math.prod(shape)
        payload_length = -(-numel * bits_per_code // 8)
        expected = _HEADER.size + 8 * ndim + meta_length + payload_length
        if size != expected:
            what = "truncated" if size < expected else "size mismatch"
            raise CodecError(
                f"{path}: {what}: {size} bytes, but the header (shape {list(shape)}, {bits_per_code} bits per code, "
                f"{meta_length} bytes of meta) makes {expected}"
            )
        rest = f.read(meta_length + payload_length)
    if len(rest) != meta_length + payload_length:  # the file changed while we read it
        raise CodecError(f"{path}: truncated while reading: {len(rest)} of {meta_length + payload_length} bytes after the shape")
    if zlib.crc32(rest, zlib.crc32(shape_bytes)) != crc:
        raise CodecError(f"{path}: checksum mismatch: the file is corrupted")
    meta_bytes, payload = rest[:meta_length], rest[meta_length:]
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CodecError(f"{path}: corrupt meta (not UTF-8 JSON): {error}") from None
    padding = -numel * bits_per_code % 8
    if padding and payload[-1] & ((1 << padding) - 1):
        raise CodecError(f"{path}: corrupt payload: the {padding} padding bits after the last code are not zero")
    return _unpack(payload, numel, bits_per_code).reshape(shape), meta


def packed_size(numel: int, bits_per_code: int) -> int:
    """Bytes of the payload: ceil(numel * bits_per_code / 8)."""
    return -(-numel * bits_per_code // 8)


def _check_width(bits_per_code) -> None:
    if isinstance(bits_per_code, bool) or not isinstance(bits_per_code, int) or not 1 <= bits_per_code <= MAX_BITS:
        raise ValueError(f"codec: bits_per_code must be an integer in [1, {MAX_BITS}], got {bits_per_code!r}")


def _encode_meta(meta) -> bytes:
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"codec.save: meta must be a dict or None, got {type(meta).__name__}")
    try:
        text = json.dumps(meta, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"codec.save: meta must be JSON-serialisable: {error}") from None
    if json.loads(text) != meta:
        raise ValueError("codec.save: meta would not load back unchanged from JSON (tuples, non-string keys?)")
    data = text.encode("utf-8")
    if len(data) >= 1 << 32:
        raise ValueError(f"codec.save: meta is {len(data)} bytes as JSON, at most 2**32 - 1")
    return data


def _pack(flat: Tensor, width: int) -> bytes:
    """(n,) int64 -> the codes' bits, MSB first, back to back, zero-padded to a whole byte."""
    chunks = []
    for start in range(0, flat.numel(), _CHUNK):
        bits = to_bits(flat[start : start + _CHUNK], width).reshape(-1)
        pad = -bits.numel() % 8  # only in the last chunk
        if pad:
            bits = torch.cat([bits, bits.new_zeros(pad)])
        chunks.append(pack_bits(bits.reshape(-1, 8)).reshape(-1).numpy().tobytes())
    return b"".join(chunks)


def _unpack(payload: bytes, numel: int, width: int) -> Tensor:
    packed = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload else torch.empty(0, dtype=torch.uint8)
    out = torch.empty(numel, dtype=torch.int64)
    for start in range(0, numel, _CHUNK):
        count = min(_CHUNK, numel - start)
        first = start * width // 8  # exact: start is a multiple of 8
        bits = unpack_bits(packed[first : first + packed_size(count, width)].reshape(-1, 1), 8).reshape(-1)
        out[start : start + count] = to_decimal(bits[: count * width].reshape(count, width))
    return out


def _write_atomic(path, parts: Iterable[bytes]) -> None:
    """Writes to a new temporary file next to path, fsyncs it, then renames it over path, so
    path holds either its old content or all of the new one, never part of it."""
    path = os.fsdecode(path)
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666: the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
