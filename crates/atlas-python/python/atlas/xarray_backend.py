"""The xarray engine ``"atlas"``: ``xr.open_dataset(store, engine="atlas", group=name)``.

The store yields *raw* variables and attributes, exactly as the netCDF4 engine
yields them for the original file when the dataset was imported from NetCDF
(``atlas import``); xarray's own CF decoding (``StoreBackendEntrypoint``) does
the rest, so decoding behaves as it does for the file:

- ``char`` variables (strings in ATLAS, with the folded dimension recorded in
  ``_nc_char_dim``) come back as ``S1`` arrays padded with NULs to the recorded
  dimension length, so xarray's "stackable" rule concatenates them (or not)
  exactly as for the file;
- attributes get their NetCDF numeric types back from ``_nc_attr_types`` (a
  ``float`` ``scale_factor`` is a ``numpy.float32``, which decides the decoded
  dtype); other integers are ``int32`` when they fit, as export writes them;
- the ``_nc_*`` bookkeeping attributes are hidden.

Arrays are lazy (:class:`AtlasBackendArray`); a selection is one Rust read of
the selection's bounding box, indexed in numpy.

This module is imported by xarray's plugin discovery in every process that has
the package installed, so importing it is cheap and starts nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
from xarray.backends.common import AbstractDataStore, BackendArray, BackendEntrypoint
from xarray.backends.store import StoreBackendEntrypoint
from xarray.core import indexing
from xarray.core.dataset import Dataset as XrDataset
from xarray.core.utils import FrozenDict
from xarray.core.variable import Variable

from ._atlas import Dataset, Store

__all__ = ["AtlasBackendArray", "AtlasBackendEntrypoint", "AtlasDataStore"]

_NC_PREFIX = "_nc_"

# NetCDF type name → numpy dtype of the value netCDF4-python returns.
_NC_NUMPY: dict[str, Any] = {
    "byte": np.int8,
    "ubyte": np.uint8,
    "short": np.int16,
    "ushort": np.uint16,
    "int": np.int32,
    "uint": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float": np.float32,
    "double": np.float64,
}
_INT32 = np.iinfo(np.int32)


def _default_nc_type(value: Any) -> str | None:
    """The NetCDF type export picks for an attribute without a recorded type."""
    items = value if isinstance(value, list) else [value]
    if all(isinstance(v, bool) for v in items) and items:
        return "byte"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items) and items:
        if all(_INT32.min <= v <= _INT32.max for v in items):
            return "int"
        return "uint64" if any(v > np.iinfo(np.int64).max for v in items) else "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        return "double"
    if isinstance(value, np.datetime64) or (
        items and all(isinstance(v, np.datetime64) for v in items)
    ):
        return "int64"
    return None


def _nc_attr_value(value: Any, nc_type: str | None) -> Any:
    """An attribute as netCDF4-python returns it: numbers as numpy scalars (one
    value) or arrays (several), text as ``str``."""
    if isinstance(value, str):
        # netCDF4-python drops every NUL of a `char` attribute (NCO writes
        # them as terminators); a `string` attribute comes back as stored.
        return value if nc_type == "string" else value.replace("\x00", "")
    if nc_type is None:
        nc_type = _default_nc_type(value)
    np_type = _NC_NUMPY.get(nc_type or "")
    if np_type is None:
        return value
    if isinstance(value, np.datetime64):
        value = int(value.astype("datetime64[ns]").astype(np.int64))
    if isinstance(value, list):
        if value and isinstance(value[0], np.datetime64):
            value = [int(v.astype("datetime64[ns]").astype(np.int64)) for v in value]
        arr = np.array(value, dtype=np_type)
        return arr[0] if arr.size == 1 else arr
    return np_type(value)


def _visible_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` without ``_nc_*``, with NetCDF types restored."""
    types: dict[str, str] = {}
    for entry in attrs.get("_nc_attr_types", []) or []:
        t, _, name = str(entry).partition(":")
        types[name] = t
    return {
        k: _nc_attr_value(v, types.get(k))
        for k, v in attrs.items()
        if not k.startswith(_NC_PREFIX)
    }


def _encode_strings(cells: np.ndarray, strlen: int, encoding: str) -> np.ndarray:
    """An ``S1`` array of shape ``cells.shape + (strlen,)``: each string's bytes
    padded with NULs (``char`` variables as netCDF4-python returns them raw)."""
    flat = [s.encode(encoding) for s in cells.ravel().tolist()]
    width = max(strlen, 1)
    fixed = np.array(flat, dtype=f"S{width}").reshape(-1)
    out = fixed.view("S1").reshape(cells.shape + (width,))
    return out[..., :strlen] if strlen != width else out


class AtlasBackendArray(BackendArray):
    """A lazy array: reads go to the store only when xarray indexes it.

    Thread safe (the Rust read releases the GIL and needs no lock), and
    picklable when its store handle is read-only (a recipe, see ``atlas._pickle``).
    """

    __slots__ = ("char_cells", "char_encoding", "dataset", "dtype", "name", "shape", "strlen")

    def __init__(
        self,
        dataset: Dataset,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        strlen: int | None = None,
        char_encoding: str = "utf-8",
        char_cells: bool = False,
    ) -> None:
        self.dataset = dataset
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.strlen = strlen
        self.char_encoding = char_encoding
        # A `char` variable without a string axis (a scalar `char`): each
        # stored string is one character, read back as `S1`.
        self.char_cells = char_cells

    def __getitem__(self, key: indexing.ExplicitIndexer) -> Any:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._raw_indexing_method
        )

    def _raw_indexing_method(self, key: tuple[Any, ...]) -> np.ndarray:
        # One read of the bounding box of the selection, then numpy indexing
        # relative to the box.
        store_rank = len(self.shape) - (1 if self.strlen is not None else 0)
        starts: list[int] = []
        counts: list[int] = []
        local: list[Any] = []
        for axis, (k, n) in enumerate(zip(key, self.shape, strict=True)):
            loc: Any
            if isinstance(k, (int, np.integer)):
                i = int(k) + n if k < 0 else int(k)
                # The character axis is read whole; others read just cell i.
                lo, cnt, loc = (0, n, i) if axis >= store_rank else (i, 1, 0)
            else:
                idx = np.arange(n)[k] if isinstance(k, slice) else np.asarray(k, dtype=np.int64)
                idx = np.where(idx < 0, idx + n, idx)
                if axis >= store_rank:
                    # The character axis: always read whole, indexed in numpy.
                    lo, cnt = 0, n
                    loc = slice(None) if np.array_equal(idx, np.arange(n)) else idx
                elif idx.size == 0:
                    lo, cnt, loc = 0, 0, idx
                else:
                    lo = int(idx.min())
                    cnt = int(idx.max()) - lo + 1
                    loc = idx - lo
                    if cnt == idx.size and np.array_equal(loc, np.arange(cnt)):
                        loc = slice(None)
            if axis < store_rank:
                starts.append(lo)
                counts.append(cnt)
            local.append(loc)
        box = self._read_box(starts, counts, store_rank)
        # Outer indexing axis by axis, last axis first so earlier axes keep
        # their positions when an integer drops one.
        out = box
        for axis in reversed(range(len(local))):
            loc = local[axis]
            if isinstance(loc, slice):
                continue
            out = np.take(out, loc, axis=axis)
        return np.asarray(out)

    def _read_box(self, starts: list[int], counts: list[int], store_rank: int) -> np.ndarray:
        if self.char_cells:
            if any(c == 0 for c in counts):
                return np.empty(tuple(counts), dtype="S1")
            cells = self.dataset.read(self.name, starts, counts) if store_rank else self.dataset.read(
                self.name
            )
            flat = [str(c).encode(self.char_encoding) for c in np.asarray(cells, dtype=object).ravel()]
            return np.array(flat, dtype="S1").reshape(np.shape(cells))
        if self.strlen is None:
            if any(c == 0 for c in counts):
                return np.empty(tuple(counts), dtype=self.dtype)
            return self.dataset.read(self.name, starts, counts)
        if any(c == 0 for c in counts):
            return np.empty(tuple(counts) + (self.strlen,), dtype="S1")
        cells = self.dataset.read(self.name, starts, counts) if store_rank else self.dataset.read(
            self.name
        )
        return _encode_strings(np.asarray(cells, dtype=object), self.strlen, self.char_encoding)


class AtlasDataStore(AbstractDataStore):
    """One dataset of a store, yielding raw (still CF-encoded) variables."""

    def __init__(self, dataset: Dataset, variables: Iterable[str] | None = None) -> None:
        self.dataset = dataset
        self._only = None if variables is None else set(variables)
        ds_attrs: dict[str, Any] = dataset.attrs
        self._ds_attrs = ds_attrs
        dims = list(ds_attrs.get("_nc_dims", []) or [])
        lens = list(ds_attrs.get("_nc_dim_lens", []) or [])
        self._dim_lens = dict(zip(dims, lens, strict=False))

    def _variable(self, name: str) -> Variable:
        ds = self.dataset
        info = ds.array_info(name)
        attrs: dict[str, Any] = ds.array_attrs(name)
        dims = tuple(info["dims"])
        shape = tuple(int(n) for n in info["shape"])
        nc_type = attrs.get("_nc_type")
        char_dim = attrs.get("_nc_char_dim")
        visible = _visible_attrs(attrs)
        strlen: int | None = None
        char_cells = False
        encoding: dict[str, Any] = {}
        if info["dtype"] == "str" and nc_type in ("char", "char_latin1") and char_dim:
            strlen = int(self._dim_lens.get(char_dim, 0))
            dims = dims + (char_dim,)
            shape = shape + (strlen,)
            dtype: np.dtype[Any] = np.dtype("S1")
            if "_FillValue" in visible:
                # As xarray's netCDF4 backend does for char variables.
                visible["_FillValue"] = np.bytes_(str(visible["_FillValue"]).encode("latin-1"))
        elif info["dtype"] == "str" and nc_type in ("char", "char_latin1"):
            char_cells = True
            dtype = np.dtype("S1")
            if "_FillValue" in visible:
                visible["_FillValue"] = np.bytes_(str(visible["_FillValue"]).encode("latin-1"))
        elif info["dtype"] == "str":
            from xarray.coding.strings import create_vlen_dtype

            dtype = create_vlen_dtype(str)
        else:
            dtype = np.dtype(info["dtype"])
        array = AtlasBackendArray(
            ds,
            name,
            shape,
            dtype,
            strlen=strlen,
            char_encoding="latin-1" if nc_type == "char_latin1" else "utf-8",
            char_cells=char_cells,
        )
        encoding["dtype"] = dtype
        encoding["original_shape"] = shape
        encoding["preferred_chunks"] = dict(zip(info["dims"], info["chunks"], strict=True))
        return Variable(dims, indexing.LazilyIndexedArray(array), visible, encoding)

    def get_variables(self) -> Mapping[str, Variable]:
        names = self.dataset.arrays()
        if self._only is not None:
            names = [n for n in names if n in self._only]
        return FrozenDict((n, self._variable(n)) for n in names)

    def get_attrs(self) -> Mapping[str, Any]:
        return FrozenDict(_visible_attrs(self._ds_attrs))

    def get_dimensions(self) -> Mapping[str, int]:
        return FrozenDict(self._dim_lens)

    def get_encoding(self) -> dict[str, Any]:
        unlimited = self._ds_attrs.get("_nc_unlimited")
        return {"unlimited_dims": set(unlimited)} if unlimited else {}

    def close(self) -> None:
        pass


# Read-only handles opened by path, reused while the store's commit point is
# unchanged: every commit replaces `atlas.json` by a rename, so its (inode,
# mtime, size) changes. Opening a store replays its registry (about 250 ms for
# 3,000 datasets), which would otherwise be paid by every open_dataset call.
_path_cache: dict[str, tuple[tuple[int, int, int, int], Store]] = {}
_path_lock = threading.Lock()


def _signature(path: str) -> tuple[int, int, int, int]:
    st = os.stat(os.path.join(path, "atlas.json"))
    return (st.st_ino, st.st_mtime_ns, st.st_size, os.getpid())


def _is_url(path: str) -> bool:
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.isascii() and scheme.replace("+", "").isalnum()


def _open_by_path(path: str) -> Store:
    if _is_url(path) and not path.startswith("file://"):
        # An object store: no local commit point to watch, so no reuse.
        return Store.open(path, mode="r")
    path = os.path.abspath(path)
    try:
        sig = _signature(path)
    except OSError:
        return Store.open(path, mode="r")  # raises the store's own error
    with _path_lock:
        hit = _path_cache.get(path)
        if hit is not None and hit[0] == sig and not hit[1].closed:
            return hit[1]
    store = Store.open(path, mode="r")
    with _path_lock:
        _path_cache[path] = (sig, store)
    return store


def _store_of(filename_or_obj: Any) -> Store:
    if isinstance(filename_or_obj, Store):
        return filename_or_obj
    if isinstance(filename_or_obj, Dataset):
        return filename_or_obj.store
    return _open_by_path(os.fspath(filename_or_obj))


class AtlasBackendEntrypoint(BackendEntrypoint):
    """``engine="atlas"``: one dataset of an ATLAS store as an ``xarray.Dataset``.

    ``filename_or_obj`` is a store path, an ``atlas.Store`` or an
    ``atlas.Dataset``; ``group`` names the dataset (optional when the store
    holds exactly one, or when an ``atlas.Dataset`` is given); ``variables``
    opens only those variables.
    """

    description = "Open one dataset of an ATLAS store (many named N-d datasets in one directory)"
    url = "https://example.invalid/atlas/docs/python.md"
    open_dataset_parameters: ClassVar[tuple[str, ...]] = (
        "filename_or_obj",
        "drop_variables",
        "mask_and_scale",
        "decode_times",
        "concat_characters",
        "decode_coords",
        "use_cftime",
        "decode_timedelta",
        "group",
        "variables",
    )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if isinstance(filename_or_obj, (Store, Dataset)):
            return True
        try:
            path = os.fspath(filename_or_obj)
            return os.path.isfile(os.path.join(path, "atlas.json"))
        except Exception:  # noqa: BLE001 - guessing must never raise
            return False

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: bool = True,
        decode_times: bool = True,
        concat_characters: bool = True,
        decode_coords: bool = True,
        use_cftime: bool | None = None,
        decode_timedelta: bool | None = None,
        group: str | None = None,
        variables: Iterable[str] | None = None,
    ) -> XrDataset:
        if isinstance(filename_or_obj, Dataset) and group is None:
            dataset = filename_or_obj
        else:
            store = _store_of(filename_or_obj)
            if group is None:
                names = store.list()
                if len(names) != 1:
                    raise ValueError(
                        f"store {store.path} holds {len(names)} datasets: "
                        "name one with group=<dataset name>"
                    )
                group = names[0]
            dataset = store.dataset(group)
        if isinstance(drop_variables, str):
            drop_variables = [drop_variables]
        if drop_variables is not None:
            dropped = set(drop_variables)
            keep = [n for n in dataset.arrays() if n not in dropped]
            variables = keep if variables is None else [n for n in variables if n in keep]
        data_store = AtlasDataStore(dataset, variables)
        return StoreBackendEntrypoint().open_dataset(
            data_store,
            mask_and_scale=mask_and_scale,
            decode_times=decode_times,
            concat_characters=concat_characters,
            decode_coords=decode_coords,
            drop_variables=drop_variables,
            use_cftime=use_cftime,
            decode_timedelta=decode_timedelta,
        )
