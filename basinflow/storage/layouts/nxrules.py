"""The NeXus rules beamline files rely on, in every dialect seen in the wild.

* Attributes may be strings, bytes, 0-d arrays or 1-element arrays (Diamond GDA writes
  ``NX_class = [b'NXdata']``); :func:`text` and :func:`names` accept all of them.
* ``@default`` is followed from the root to an ``NXentry`` and on to an ``NXdata``; its
  value may be a child name, a relative path (``ESRF-ID11/eiger/plot``) or an absolute one.
* ``NXdata`` names its plottable data with ``@signal`` on the group, or (NeXus before 2014)
  with ``@signal=1`` on the dataset; axes with ``@axes`` (a list, a string, or
  ``"a:b"``), ``AXISNAME_indices``, or old-style ``@axis=N`` (1-based) on each axis dataset.

These are the rules silx (``silx.io.nxdata``) and nexusformat apply; the functions here
only read attributes and shapes, never data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

_SPLIT = re.compile(r"[:,\s]+")


def text(value: Any) -> str:
    """An attribute as one string: bytes, numpy strings, 0-d and 1-element arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return text(value.reshape(-1)[0])
        return ",".join(text(v) for v in value.reshape(-1))
    if isinstance(value, np.generic):
        return text(value.item())
    return str(value)


def names(value: Any) -> list[str]:
    """A list-of-names attribute (``@axes``): an array of strings, or one string that may
    hold several names separated by ``:`` or ``,`` (old style), brackets dropped."""
    if isinstance(value, np.ndarray) and value.size > 1:
        return [text(v).strip() for v in value.reshape(-1)]
    raw = text(value).strip().strip("[]")
    return [n.strip("'\" ") for n in _SPLIT.split(raw) if n.strip("'\" ")]


def nx_class(obj: h5py.HLObject) -> str:
    return text(obj.attrs.get("NX_class", ""))


def follow(group: h5py.Group, path: str) -> h5py.HLObject | None:
    try:
        return group[path] if path.startswith("/") else group[path.strip("/")]
    except (KeyError, ValueError, OSError):  # absent, or a broken external link
        return None


def default_entry(root: h5py.Group) -> h5py.Group | None:
    """The entry ``@default`` names, else the only ``NXentry``; ``None`` when ambiguous."""
    name = root.attrs.get("default")
    if name is not None:
        g = follow(root, text(name))
        if isinstance(g, h5py.Group):
            return g
    entries = [
        o
        for o in (root.get(k) for k in root)
        if isinstance(o, h5py.Group) and nx_class(o) == "NXentry"
    ]
    return entries[0] if len(entries) == 1 else None


def default_nxdata(group: h5py.Group, depth: int = 8) -> h5py.Group | None:
    """Follow ``@default`` from ``group`` (an entry or any group) to an ``NXdata``."""
    g: Any = group
    for _ in range(depth):
        if nx_class(g) == "NXdata":
            return g
        name = g.attrs.get("default")
        if name is None:
            return None
        nxt = follow(g, text(name))
        if not isinstance(nxt, h5py.Group):
            return None
        g = nxt
    return None


def nxdata_groups(group: h5py.Group) -> list[h5py.Group]:
    return [
        o
        for o in (group.get(k) for k in group)
        if isinstance(o, h5py.Group) and nx_class(o) == "NXdata"
    ]


@dataclass
class NXdata:
    """What an NXdata group says: its signal dataset and, per axis name, the signal dims
    it spans (``None`` where the axis dataset is absent)."""

    group: h5py.Group
    signal: h5py.Dataset | None
    signal_name: str | None
    axes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _old_style_signal(group: h5py.Group) -> str | None:
    for name in group:
        obj = group.get(name)
        if isinstance(obj, h5py.Dataset) and "signal" in obj.attrs:
            try:
                if int(text(obj.attrs["signal"]).strip() or 0) == 1:
                    return name
            except ValueError:
                continue
    return None


def read_nxdata(group: h5py.Group) -> NXdata:
    """The signal and axes of an ``NXdata`` group, in any dialect."""
    sig = group.attrs.get("signal")
    name = text(sig).strip() if sig is not None else _old_style_signal(group)
    signal = group.get(name) if name else None
    if not isinstance(signal, h5py.Dataset):
        return NXdata(group, None, name)
    rank = signal.ndim
    axes: dict[str, tuple[int, ...]] = {}
    listed = group.attrs.get("axes")
    if listed is None and "axes" in signal.attrs:  # old style: @axes on the signal
        listed = signal.attrs["axes"]
    order = names(listed) if listed is not None else []
    for dim, axis in enumerate(order):
        if axis and axis != "." and dim < rank:
            axes.setdefault(axis, (dim,))
    for key in group.attrs:
        if key.endswith("_indices"):
            axis = key[: -len("_indices")]
            idx = np.atleast_1d(np.asarray(group.attrs[key])).astype(int).reshape(-1)
            axes[axis] = tuple(int(i) for i in idx)
    for aname in group:
        obj = group.get(aname)
        if isinstance(obj, h5py.Dataset) and "axis" in obj.attrs and aname not in axes:
            try:  # old style: @axis=N, 1-based dimension of the signal
                axes[aname] = (int(text(obj.attrs["axis"]).split(",")[0]) - 1,)
            except ValueError:
                continue
    return NXdata(group, signal, name, axes)


__all__ = [
    "NXdata",
    "default_entry",
    "default_nxdata",
    "follow",
    "names",
    "nx_class",
    "nxdata_groups",
    "read_nxdata",
    "text",
]
