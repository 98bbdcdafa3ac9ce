"""Pickling recipes: read-only handles travel as ``(path, generation)``.

A receiving process opens each store once (read-only) and caches the handle
per path; the pickled generation must be the one it finds, else the store has
moved on and :class:`~atlas.errors.StaleHandleError` says so.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from ._atlas import Dataset, Store
from .errors import StaleHandleError

_lock = threading.Lock()
_cache: dict[str, Store] = {}
_cache_pid = os.getpid()


def reopen_store(path: str, generation: int) -> Store:
    """The read-only store at ``path`` at ``generation`` (cached per process)."""
    global _cache_pid
    with _lock:
        if _cache_pid != os.getpid():
            # Handles inherited through fork() are unusable here.
            _cache.clear()
            _cache_pid = os.getpid()
        store = _cache.get(path)
        if store is None or store.closed or store.generation != generation:
            store = Store.open(path, mode="r")
            _cache[path] = store
    if store.generation != generation:
        raise StaleHandleError(
            f"store {path} is at generation {store.generation}, the pickled handle at "
            f"{generation}: it changed since the handle was pickled; reopen and pickle again"
        )
    return store


def reopen_dataset(
    reopen: Callable[..., Store], store_args: tuple[Any, ...], name: str
) -> Dataset:
    """The dataset ``name`` of the store rebuilt by ``reopen(*store_args)``."""
    return reopen(*store_args).dataset(name)
