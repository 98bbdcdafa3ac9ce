"""The dicts :meth:`atlas.Store.create_datasets` takes. They are plain
``dict`` objects at run time; these types only let a type checker check them."""

from __future__ import annotations

from typing import Any, Required, TypedDict

__all__ = ["ArraySpec", "DatasetSpec"]


class ArraySpec(TypedDict, total=False):
    """One array of a :class:`DatasetSpec`.

    ``dims`` names every axis. ``data`` (anything numpy converts) holds every
    cell, written at the origin; without it, ``dtype`` and ``shape`` are
    required and the cells read as the fill value. ``dtype`` and ``shape``
    default to the data's. ``chunks`` (default: one chunk of the whole
    shape) and ``fill_value`` are as :meth:`atlas.Dataset.define_array` takes
    them; ``attrs`` are the array's attributes.
    """

    dims: Required[list[str]]
    data: Any
    dtype: Any
    shape: list[int]
    chunks: list[int] | None
    fill_value: Any
    attrs: dict[str, Any]


class DatasetSpec(TypedDict, total=False):
    """One dataset of :meth:`atlas.Store.create_datasets`: its ``name``, its
    attributes (``attrs``) and its arrays (``arrays``, by name, in order)."""

    name: Required[str]
    attrs: dict[str, Any]
    arrays: dict[str, ArraySpec]
