"""Tasks over groups of frame chunks, and tree reductions of what they return.

Raw frames arrive chunked as they are stored (often one frame per chunk). One Dask task
per storage chunk would drown the scheduler and, for the RSM, allocate one partial grid
per frame; ``rechunk`` would copy every frame once more. Instead, :func:`grouped_tasks`
hands each task the *list* of its consecutive chunks (about ``target`` bytes of frames),
which the task processes one after the other. Memory per task stays bounded by the group
size, and storage chunks are never split. Chunks as large as ``target`` are one task each,
so a task never has to gather its frames from other workers.

:func:`tree_reduce` combines the tasks' results (any Python objects, e.g. sparse partial
grids) in a tree of ``split_every`` and turns the root into a one-chunk Dask array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

TARGET_TASK_BYTES = 64 * 2**20

Key = tuple


def task_groups(chunks: Sequence[int], frame_bytes: int, target: int = TARGET_TASK_BYTES):
    """Consecutive chunk numbers per task, each group about ``target`` bytes (at least one)."""
    groups: list[list[int]] = [[]]
    size = 0
    for c, length in enumerate(chunks):
        if groups[-1] and size + length * frame_bytes > target:
            groups.append([])
            size = 0
        groups[-1].append(c)
        size += length * frame_bytes
    return [g for g in groups if g]


def grouped_tasks(
    func: Callable[..., Any],
    frames: da.Array,
    *,
    target: int = TARGET_TASK_BYTES,
    group_args: Callable[[slice], tuple] = lambda rows: (),
    shared: Sequence[da.Array] = (),
    name: str = "grouped",
) -> tuple[dict, list[Key], list[slice], list[Any]]:
    """Tasks ``func(chunk_list, *group_args(rows), *shared)``, one per group of chunks.

    ``frames`` must be chunked along its first axis only (callers rechunk the others to
    one chunk). ``group_args(rows)`` gives small per-group arguments (``rows`` is the
    slice of frames the group covers); ``shared`` are single-chunk Dask arrays every task
    receives (stored once in the graph). Returns the task dict, the task keys, the rows
    of each task and the collections the tasks depend on.
    """
    frame_bytes = int(np.prod(frames.shape[1:], dtype=np.int64)) * frames.dtype.itemsize
    groups = task_groups(frames.chunks[0], max(frame_bytes, 1), target)
    offsets = np.concatenate([[0], np.cumsum(frames.chunks[0])]).astype(int)
    token = tokenize(func, frames.name, [s.name for s in shared], target, name)
    out_name = f"{name}-{token}"
    zeros = (0,) * (frames.ndim - 1)
    shared_keys = [(s.name, *((0,) * s.ndim)) for s in shared]
    dsk: dict = {}
    keys: list[Key] = []
    rows_of: list[slice] = []
    for t, group in enumerate(groups):
        rows = slice(int(offsets[group[0]]), int(offsets[group[-1] + 1]))
        key = (out_name, t)
        dsk[key] = (
            func,
            [(frames.name, c, *zeros) for c in group],
            *group_args(rows),
            *shared_keys,
        )
        keys.append(key)
        rows_of.append(rows)
    return dsk, keys, rows_of, [frames, *shared]


def grouped_blocks(
    func: Callable[..., np.ndarray],
    frames: da.Array,
    *,
    out_chunks: Callable[[int], tuple[int, ...]],
    dtype: Any = np.float64,
    name: str = "grouped",
    **kwargs: Any,
) -> da.Array:
    """Like :func:`grouped_tasks`, for functions returning arrays stacked along axis 0.

    ``out_chunks(n_frames_in_group)`` gives each task's output block shape.
    """
    dsk, keys, rows_of, deps = grouped_tasks(func, frames, name=name, **kwargs)
    blocks = [out_chunks(r.stop - r.start) for r in rows_of]
    ndim = len(blocks[0])
    out_name = keys[0][0]
    dsk = {(out_name, t, *((0,) * (ndim - 1))): task for (_, t), task in dsk.items()}
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=deps)
    chunks = (tuple(b[0] for b in blocks), *((blocks[0][d],) for d in range(1, ndim)))
    return da.Array(graph, out_name, chunks=chunks, dtype=dtype)


def tree_reduce(
    dsk: dict,
    keys: list[Key],
    dependencies: Sequence[Any],
    *,
    combine: Callable[..., Any],
    finalize: Callable[[Any], np.ndarray],
    length: int,
    split_every: int = 8,
    dtype: Any = np.float64,
    name: str = "tree-reduce",
) -> da.Array:
    """Combine the values of ``keys`` (tasks in ``dsk``) in a tree; a 1-D array at the root.

    ``combine(*values)`` merges up to ``split_every`` values (never asked to merge one);
    ``finalize(value)`` turns the root into an array of ``length``.
    """
    if split_every < 2:
        raise ValueError("split_every must be at least 2")
    dsk = dict(dsk)
    token = tokenize(keys, split_every, combine, finalize, length)
    level = 0
    while len(keys) > 1:
        level_name = f"{name}-{token}-{level}"
        groups = [keys[i : i + split_every] for i in range(0, len(keys), split_every)]
        keys = []
        for g, group in enumerate(groups):
            if len(group) == 1:
                keys.append(group[0])
                continue
            key = (level_name, g)
            dsk[key] = (combine, *group)
            keys.append(key)
        level += 1
    out_name = f"{name}-{token}"
    dsk[(out_name, 0)] = (finalize, keys[0])
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=list(dependencies))
    return da.Array(graph, out_name, chunks=((length,),), dtype=dtype)
