"""Pickling recipes: read-only handles travel as ``(path, generation)``.

A receiving process opens each store once (read-only) and caches the handle
per path. When the store has moved on since the handle was pickled, the
pickled generation is opened instead (``Store.open(path, at=generation)``), so
every worker reads exactly the state the client saw; when that generation is
no longer retained, :class:`~atlas.errors.StaleHandleError` says so.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from ._atlas import Dataset, Store
from .errors import NotFoundError, StaleHandleError

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
        key = f"{path}@{generation}"
        store = _cache.get(path) or _cache.get(key)
        if store is None or store.closed or store.generation != generation:
            store = Store.open(path, mode="r")
            if store.generation != generation:
                # The store moved on: the pickled generation, if it is retained.
                try:
                    store = Store.open(path, mode="r", at=generation)
                except NotFoundError as e:
                    raise StaleHandleError(
                        f"store {path} is at generation {store.generation}, the pickled "
                        f"handle at {generation}, which is no longer retained ({e}); "
                        "reopen and pickle again, or keep more history "
                        "(Store.set_retention)"
                    ) from None
                _cache[key] = store
            else:
                _cache[path] = store
    return store


def reopen_dataset(
    reopen: Callable[..., Store], store_args: tuple[Any, ...], name: str
) -> Dataset:
    """The dataset ``name`` of the store rebuilt by ``reopen(*store_args)``."""
    return reopen(*store_args).dataset(name)
