"""ATLAS: many named N-d datasets in one store, from Python.

>>> import atlas
>>> store = atlas.Store.create("/tmp/example")            # doctest: +SKIP
>>> ds = store.create_dataset("profile_1")                # doctest: +SKIP

See ``docs/python.md`` for the API, the error tree, the pickling rules and the
xarray engine (``xr.open_dataset(path, engine="atlas", group=name)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from ._atlas import Dataset, Store, __version__
from ._specs import ArraySpec, DatasetSpec
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

if TYPE_CHECKING:
    from .stacked import open_stacked
    from .writing import to_atlas, write_many

__all__ = [
    "ArraySpec",
    "Dataset",
    "DatasetSpec",
    "Store",
    "__version__",
    "errors",
    "open_stacked",
    "to_atlas",
    "write_many",
    # errors.__all__, spelled out so that type checkers see it.
    "AlreadyExistsError",
    "ArrayNotFoundError",
    "AtlasError",
    "AtlasIOError",
    "ConflictError",
    "CorruptError",
    "DatasetNotFoundError",
    "ErrorKind",
    "ForkedHandleError",
    "InvalidInputError",
    "LockedError",
    "NotFoundError",
    "ReadOnlyError",
    "ResourceExhaustedError",
    "StaleHandleError",
    "StoreExistsError",
    "StoreNotFoundError",
    "UnsupportedError",
]

# The xarray functions import xarray, which `import atlas` does not: they are
# loaded on first use (PEP 562).
_LAZY = {"open_stacked": "stacked", "to_atlas": "writing", "write_many": "writing"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'atlas' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
