"""Detector chunk codecs for the direct chunk path: Bitshuffle-LZ4 (HDF5 filter 32008) and
LZ4 (32004), the encodings Eiger/LIMA and Dectris files use.

h5py reads such datasets through hdf5plugin's filters (imported by :mod:`basinflow.storage.hdf5`);
the direct path fetches the chunk bytes itself and decodes them here, without libhdf5 or its
global lock: Bitshuffle-LZ4 through ``bitshuffle`` (the reference implementation the HDF5
filter is built from), LZ4 through ``lz4`` (python-lz4, the binding of the reference LZ4
library). Both formats are the ones the HDF5 filters write:

* LZ4: ``uint64 BE`` total bytes, ``uint32 BE`` block bytes, then per block ``uint32 BE``
  compressed size and the block (stored raw when compression did not shrink it);
* Bitshuffle-LZ4: the same 12-byte header (block size in bytes), then per block of
  ``block`` elements (a multiple of 8) a ``uint32 BE`` size and an LZ4 block of the
  bit-shuffled elements; the last ``n % 8`` elements are stored as they are.
"""

from __future__ import annotations

import bitshuffle
import numba
import numpy as np
from lz4 import block as lz4_block

BSHUF_LZ4 = 32008
LZ4 = 32004


class CodecError(ValueError):
    """A chunk that does not decode (corrupt or truncated)."""


def _header(data: bytes) -> tuple[int, int]:
    if len(data) < 12:
        raise CodecError(f"chunk of {len(data)} bytes is shorter than its 12-byte header")
    total = int.from_bytes(data[:8], "big")
    block = int.from_bytes(data[8:12], "big")
    return total, block


def _lz4(data: memoryview, size: int) -> bytes:
    try:
        return lz4_block.decompress(data, uncompressed_size=size)
    except lz4_block.LZ4BlockError as exc:
        raise CodecError(str(exc)) from None


def lz4_decode(data: bytes) -> bytes:
    """The bytes of an HDF5 LZ4-filter chunk."""
    view = memoryview(data)
    total, block = _header(data)
    block = block or total
    out = bytearray(total)
    pos, done = 12, 0
    while done < total:
        want = min(block, total - done)
        size = int.from_bytes(view[pos : pos + 4], "big")
        pos += 4
        piece = view[pos : pos + size]
        if len(piece) != size:
            raise CodecError("chunk ends inside an LZ4 block")
        out[done : done + want] = piece if size == want else _lz4(piece, want)
        if size != want and len(out) != total:
            raise CodecError("LZ4 block decodes to the wrong size")
        pos += size
        done += want
    return bytes(out)


@numba.njit(nogil=True, cache=True)
def _blocks_end(data: np.ndarray, body: int, block: int) -> int:
    """Where the last LZ4 block ends (``-1`` if a header lies past the chunk): each block's
    position follows from the previous one's size, a walk of ~2,000 headers per Eiger frame
    that cost ~1 ms per frame in Python (B8)."""
    pos, done, end = 12, 0, data.size
    while done < body:
        if pos + 4 > end:
            return -1
        size = (
            (np.int64(data[pos]) << 24)
            | (np.int64(data[pos + 1]) << 16)
            | (np.int64(data[pos + 2]) << 8)
            | np.int64(data[pos + 3])
        )
        pos += 4 + size
        m = min(block, body - done)
        done += m - m % 8
    return pos


def _check_blocks(data: bytes, n: int, block: int, itemsize: int) -> None:
    """Every block's size field lies inside the chunk: the C decoder trusts them, and a
    truncated chunk would make it read past the buffer (a crash, not an error)."""
    body = n - n % 8
    pos = _blocks_end(np.frombuffer(data, np.uint8), body, block)
    if pos < 0:
        raise CodecError("chunk ends inside its block headers (truncated)")
    if pos + (n - body) * itemsize > len(data):
        need = pos + (n - body) * itemsize
        raise CodecError(f"chunk of {len(data)} bytes is truncated (needs {need})")


def bslz4_decode(data: bytes, itemsize: int) -> np.ndarray:
    """The bytes (``uint8`` array) of an HDF5 Bitshuffle-LZ4 chunk of ``itemsize``-byte
    values, decoded in one call to the bitshuffle library's C code (the code the HDF5
    filter runs): a Python loop over its 8 KiB blocks cost more than the decoding (B8)."""
    total, block_bytes = _header(data)
    if total % itemsize:
        raise CodecError(f"chunk of {total} bytes is not whole {itemsize}-byte values")
    block = block_bytes // itemsize if block_bytes else 0
    if block <= 0 or block % 8:
        raise CodecError(f"block of {block_bytes} bytes is not a multiple of 8 values")
    _check_blocks(data, total // itemsize, block, itemsize)
    body = np.frombuffer(data, np.uint8, offset=12)
    kind = np.dtype(f"u{itemsize}") if itemsize in (1, 2, 4, 8) else np.dtype((np.void, itemsize))
    try:
        out = bitshuffle.decompress_lz4(body, (total // itemsize,), kind, block)
    except (RuntimeError, ValueError) as exc:
        raise CodecError(str(exc)) from None
    return out.view(np.uint8)


__all__ = ["BSHUF_LZ4", "LZ4", "CodecError", "bslz4_decode", "lz4_decode"]
