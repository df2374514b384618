"""Detector chunk codecs for the direct chunk path: Bitshuffle-LZ4 (HDF5 filter 32008) and
LZ4 (32004), the encodings Eiger/LIMA and Dectris files use.

h5py reads such datasets through hdf5plugin's filters (imported by :mod:`basinflow.storage.hdf5`);
the direct path fetches the chunk bytes itself and decodes them here, without libhdf5 or its
global lock: LZ4 blocks through ``lz4`` (python-lz4, the maintained binding of the reference
library), the bit transpose in numba. Both formats are the ones the HDF5 filters write:

* LZ4: ``uint64 BE`` total bytes, ``uint32 BE`` block bytes, then per block ``uint32 BE``
  compressed size and the block (stored raw when compression did not shrink it);
* Bitshuffle-LZ4: the same 12-byte header (block size in bytes), then per block of
  ``block`` elements (a multiple of 8) a ``uint32 BE`` size and an LZ4 block of the
  bit-shuffled elements; the last ``n % 8`` elements are stored as they are.
"""

from __future__ import annotations

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
def _bitunshuffle_blocks(src: np.ndarray, out: np.ndarray, n: int, block: int, itemsize: int):
    # Each block of ``m`` elements (a multiple of 8) is itemsize*8 rows of m/8 bytes; row
    # (byte j, bit k) holds bit k of byte j of every element, element i at bit i % 8 of
    # byte i // 8. The eight rows' bytes at one position form an 8x8 bit matrix whose
    # transpose (bitshuffle's TRANS_BIT_8X8) is byte j of eight consecutive elements.
    e0 = 0
    while e0 < n:
        m = min(block, n - e0)
        nb = m // 8
        off = e0 * itemsize
        for j in range(itemsize):
            base = off + j * 8 * nb
            for b in range(nb):
                x = np.uint64(0)
                for k in range(8):
                    x |= np.uint64(src[base + k * nb + b]) << np.uint64(8 * k)
                t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
                x = x ^ t ^ (t << np.uint64(7))
                t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
                x = x ^ t ^ (t << np.uint64(14))
                t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
                x = x ^ t ^ (t << np.uint64(28))
                dst = off + b * 8 * itemsize + j
                for t8 in range(8):
                    out[dst + t8 * itemsize] = np.uint8((x >> np.uint64(8 * t8)) & np.uint64(0xFF))
        e0 += m


def bitunshuffle(shuffled: np.ndarray, n: int, itemsize: int, block: int = 0) -> np.ndarray:
    """Undo bitshuffle of ``n`` elements (``n % 8 == 0``) in blocks of ``block`` elements
    (a multiple of 8; 0: one block): bytes in element order."""
    out = np.empty(n * itemsize, np.uint8)
    src = np.ascontiguousarray(shuffled, np.uint8)
    _bitunshuffle_blocks(src, out, n, block or max(n, 8), itemsize)
    return out


def bslz4_decode(data: bytes, itemsize: int) -> bytes:
    """The bytes of an HDF5 Bitshuffle-LZ4 chunk of ``itemsize``-byte elements.

    The LZ4 blocks are inflated one after the other into one buffer, then one compiled
    pass undoes the bit shuffle of every block (a Python call per 8 KiB block would cost
    more than the decoding)."""
    view = memoryview(data)
    total, block_bytes = _header(data)
    if total % itemsize:
        raise CodecError(f"chunk of {total} bytes is not whole {itemsize}-byte values")
    n = total // itemsize
    block = block_bytes // itemsize if block_bytes else 0
    if block <= 0 or block % 8:
        raise CodecError(f"block of {block_bytes} bytes is not a multiple of 8 values")
    shuffled = bytearray(total)
    pos, done = 12, 0
    body = n - n % 8
    while done < body:
        m = min(block, body - done)
        m -= m % 8
        size = int.from_bytes(view[pos : pos + 4], "big")
        pos += 4
        piece = view[pos : pos + size]
        if len(piece) != size:
            raise CodecError("chunk ends inside an LZ4 block")
        raw = _lz4(piece, m * itemsize)
        if len(raw) != m * itemsize:
            raise CodecError("LZ4 block decodes to the wrong size")
        shuffled[done * itemsize : (done + m) * itemsize] = raw
        pos += size
        done += m
    src = np.frombuffer(shuffled, np.uint8)
    out = np.empty(total, np.uint8)
    _bitunshuffle_blocks(src, out, body, block, itemsize)
    tail = (n - body) * itemsize
    if tail:
        rest = view[pos : pos + tail]
        if len(rest) != tail:
            raise CodecError("chunk ends inside its unshuffled tail")
        out[body * itemsize :] = np.frombuffer(rest, np.uint8)
    return out.data


__all__ = ["BSHUF_LZ4", "LZ4", "CodecError", "bitunshuffle", "bslz4_decode", "lz4_decode"]
