"""The exception tree of ATLAS.

Every exception raised for a store error is an :class:`AtlasError` with a stable
``kind`` string, the Rust ``ErrorKind::as_str()`` (``"not_found"``,
``"already_exists"``, ``"invalid_input"``, ``"conflict"``, ``"corrupt"``,
``"unsupported"``, ``"resource_exhausted"``, ``"io"``). Classes also derive
from the matching built-in exception, so generic code catches them:
not-found errors are ``KeyError``, invalid input is ``ValueError``, a missing
store is ``FileNotFoundError``, an existing one ``FileExistsError``.

Each class has exactly one kind, and instances hold only their message, so
they survive pickling (dask ships worker exceptions back to the client):
``pickle.loads(pickle.dumps(e))`` keeps the class, the message and the kind.
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
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


class ErrorKind(enum.StrEnum):
    """What the caller can do about an error; the Rust ``ErrorKind``."""

    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    INVALID_INPUT = "invalid_input"
    CONFLICT = "conflict"
    CORRUPT = "corrupt"
    UNSUPPORTED = "unsupported"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    IO = "io"


class AtlasError(Exception):
    """Base of every ATLAS error. ``kind`` says what the caller can do."""

    kind: ClassVar[ErrorKind]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        # KeyError would quote the message; OSError would format errno.
        return self.message

    def __reduce__(self) -> tuple[type[AtlasError], tuple[str]]:
        return (type(self), (self.message,))


class NotFoundError(AtlasError, KeyError):
    """A store, dataset, array or attribute that does not exist."""

    kind = ErrorKind.NOT_FOUND


class StoreNotFoundError(NotFoundError, FileNotFoundError):
    """No store at the path (no ``atlas.json``)."""


class DatasetNotFoundError(NotFoundError):
    """The store has no such dataset."""


class ArrayNotFoundError(NotFoundError):
    """The dataset has no such array."""


class AlreadyExistsError(AtlasError):
    """A store, dataset or array of that name already exists."""

    kind = ErrorKind.ALREADY_EXISTS


class StoreExistsError(AlreadyExistsError, FileExistsError):
    """``Store.create`` found a store already there."""


class InvalidInputError(AtlasError, ValueError):
    """A bad name, dtype, shape, bound, value or argument: fix the call."""

    kind = ErrorKind.INVALID_INPUT


class ConflictError(AtlasError):
    """Another writer or a newer commit is in the way."""

    kind = ErrorKind.CONFLICT


class LockedError(ConflictError):
    """Another handle holds the store's writer lock."""


class StaleHandleError(ConflictError):
    """The store changed since this handle (or pickled recipe) was made; reopen it."""


class CorruptError(AtlasError):
    """Damaged files: a checksum, a bound or the registry does not check out."""

    kind = ErrorKind.CORRUPT


class UnsupportedError(AtlasError):
    """Something this build or handle cannot do (a format version, a codec, a URL scheme)."""

    kind = ErrorKind.UNSUPPORTED


class ReadOnlyError(UnsupportedError):
    """A write through a handle opened with ``mode="r"``."""


class ForkedHandleError(UnsupportedError, RuntimeError):
    """A handle used in a ``fork()``ed child; open the store again there."""


class ResourceExhaustedError(AtlasError):
    """Out of file descriptors, memory or disk space."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class AtlasIOError(AtlasError, OSError):
    """An I/O error from the operating system."""

    kind = ErrorKind.IO

    def __init__(self, message: str) -> None:
        # OSError.__init__ would read a second argument as errno.
        OSError.__init__(self, message)
        self.message = message
