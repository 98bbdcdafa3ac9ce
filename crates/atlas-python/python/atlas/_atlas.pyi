"""Type stubs of the extension module ``atlas._atlas`` (hand-written; the Rust
sources are in ``crates/atlas-python/src``)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Callable, Literal, final

import numpy as np
import numpy.typing as npt

from ._specs import DatasetSpec

__all__ = ["Store", "Dataset", "error_kinds", "__version__"]

__version__: str

_AttrValue = (
    bool
    | int
    | float
    | str
    | np.datetime64
    | list[bool]
    | list[int]
    | list[float]
    | list[str]
    | list[np.datetime64]
)

def error_kinds() -> list[str]:
    """Every Rust ``ErrorKind`` string, in order."""

@final
class Store:
    """A store opened read-only (``mode="r"``) or for appending (``mode="a"``)."""

    @staticmethod
    def create(path: str | os.PathLike[str]) -> Store:
        """Creates a store at ``path`` (made if missing), open for writing."""
    @staticmethod
    def open(
        path: str | os.PathLike[str],
        mode: Literal["r", "a"] = "r",
        at: int | str | None = None,
    ) -> Store:
        """Opens the store at ``path``; ``at`` opens a retained past state read-only:
        a generation (``int``), or a tag name, an ISO-8601 UTC time or ``@<ms>`` (``str``)."""
    @property
    def path(self) -> str: ...
    @property
    def mode(self) -> Literal["r", "a"]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def generation(self) -> int: ...
    def dataset(self, name: str) -> Dataset: ...
    def __getitem__(self, name: str, /) -> Dataset: ...
    def create_dataset(self, name: str) -> Dataset: ...
    def create_datasets(self, datasets: Iterable[DatasetSpec]) -> int:
        """Creates every dataset of ``datasets`` in one call, all or nothing
        (checked before anything is written); returns how many. Durable at
        the next ``flush``."""
    def delete_dataset(self, name: str) -> None: ...
    def list(self, pattern: str | None = None) -> builtins.list[str]:
        """Dataset names, those matching the glob ``pattern`` (``*``, ``?``) when given."""
    def array_names(self) -> builtins.list[str]: ...
    def __contains__(self, name: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def describe_across(
        self, array: str, datasets: Sequence[str], watch: Sequence[str] = ...
    ) -> dict[str, Any]:
        """What the registry says about ``array`` in each of ``datasets`` (no data read):
        ``dtype``, ``dims``, ``fill_value``, ``attrs`` (of the first dataset that has it),
        ``differing_attrs``, ``present`` (bool array) and ``shapes`` (int64, one row each)."""
    def dataset_attrs(
        self, datasets: Sequence[str], keys: Sequence[str] | None = None
    ) -> builtins.list[dict[str, _AttrValue]]:
        """The dataset attributes of each of ``datasets`` (only ``keys`` when given)."""
    def read_across(
        self,
        array: str,
        datasets: Sequence[str],
        start: Sequence[int] | None = None,
        count: Sequence[int] | None = None,
        fill: Any = None,
        nan_where: Sequence[float] = ...,
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        """``(data, lengths)``: ``array`` of every dataset stacked along a new first axis
        in one parallel read, padded with ``fill``; ``lengths[i]`` is the extent dataset
        ``i`` holds of the box (zeros where it lacks the array). Cells of a float array
        equal to one of ``nan_where`` read as NaN."""
    def flush(self) -> None: ...
    def set_retention(self, keep_generations: int, keep_secs: int = 0) -> None:
        """Keeps the newest ``keep_generations`` generations (and those younger than
        ``keep_secs`` seconds) readable with ``Store.open(path, at=...)``."""
    def compact(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Store: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    def __dask_tokenize__(self) -> tuple[str, str, int, int]:
        """Location and generation (read-only); a new random token each call (writable)."""
    def __reduce__(self) -> tuple[Callable[..., Store], tuple[str, int]]: ...

@final
class Dataset:
    """One dataset of a store."""

    @property
    def name(self) -> str: ...
    @property
    def store(self) -> Store: ...
    @property
    def attrs(self) -> dict[str, _AttrValue]: ...
    def arrays(self) -> list[str]: ...
    def __contains__(self, name: object, /) -> bool: ...
    def array_info(self, name: str) -> dict[str, Any]:
        """``{"dtype", "dims", "shape", "chunks", "fill_value"}``."""
    def define_array(
        self,
        name: str,
        dtype: npt.DTypeLike,
        dims: Sequence[str],
        shape: Sequence[int],
        chunks: Sequence[int] | None = None,
        fill_value: Any = None,
    ) -> None: ...
    def write(self, name: str, data: npt.ArrayLike, start: Sequence[int] | None = None) -> None: ...
    def read(
        self, name: str, start: Sequence[int] | None = None, count: Sequence[int] | None = None
    ) -> npt.NDArray[Any]: ...
    def delete_array(self, name: str) -> None: ...
    def stats(self, name: str) -> dict[str, Any]:
        """``{"min", "max", "null_count", "row_count"}``."""
    def get_attr(self, key: str, default: Any = None) -> Any: ...
    def set_attr(self, key: str, value: _AttrValue) -> None: ...
    def delete_attr(self, key: str) -> None: ...
    def array_attrs(self, name: str) -> dict[str, _AttrValue]: ...
    def set_array_attr(self, name: str, key: str, value: _AttrValue) -> None: ...
    def delete_array_attr(self, name: str, key: str) -> None: ...
    def __dask_tokenize__(self) -> tuple[tuple[str, str, int, int], str]:
        """The store's token and the dataset's name."""
    def __reduce__(self) -> tuple[Callable[..., Dataset], tuple[Any, ...]]: ...
