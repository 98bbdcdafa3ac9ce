"""ATLAS: many named N-d datasets in one store, from Python.

>>> import atlas
>>> store = atlas.Store.create("/tmp/example")            # doctest: +SKIP
>>> ds = store.create_dataset("profile_1")                # doctest: +SKIP

See ``docs/python.md`` for the API, the error tree, the pickling rules and the
xarray engine (``xr.open_dataset(path, engine="atlas", group=name)``).
"""

from __future__ import annotations

from . import errors
from ._atlas import Dataset, Store, __version__
from .errors import (
    AlreadyExistsError,
    ArrayNotFoundError,
    AtlasError,
    AtlasIOError,
    ConflictError,
    CorruptError,
    DatasetNotFoundError,
    ErrorKind,
    ForkedHandleError,
    InvalidInputError,
    LockedError,
    NotFoundError,
    ReadOnlyError,
    ResourceExhaustedError,
    StaleHandleError,
    StoreExistsError,
    StoreNotFoundError,
    UnsupportedError,
)

__all__ = ["Dataset", "Store", "__version__", "errors"]
__all__ += errors.__all__
