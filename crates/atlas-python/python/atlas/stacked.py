"""Many datasets as one xarray object: :func:`open_stacked`.

``atlas.open_stacked(store, ["TEMP", "PSAL"], datasets="D29*")`` returns one
lazy ``xarray.Dataset`` whose variables have a leading dataset dimension. Ragged
axes (profiles with different numbers of levels) are padded to the largest
extent with the variable's ``_FillValue`` (so CF decoding masks them to NaN),
the dataset names are the coordinate of the new dimension, and the true extent
of every padded dimension is the coordinate ``<dim>_length``.

A selection over (datasets × hyperslab) is one Rust call
(``Store.read_across``, built on the core's parallel ``read_array_across``):
with ``chunks=`` the dask graph has one task per chunk of datasets, not one
per file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from xarray.backends.common import AbstractDataStore, BackendArray
from xarray.backends.store import StoreBackendEntrypoint
from xarray.core import indexing
from xarray.core.dataset import Dataset as XrDataset
from xarray.core.utils import FrozenDict
from xarray.core.variable import Variable

from ._atlas import Dataset, Store
from .errors import ArrayNotFoundError, InvalidInputError
from .xarray_backend import _encode_strings, _store_of, _visible_attrs

__all__ = ["StackedBackendArray", "open_stacked"]

# Attributes that change how CF decoding reads raw values: a stacked variable
# needs one value of each for all its datasets.
_DECODING_ATTRS = frozenset(
    {
        "_FillValue",
        "missing_value",
        "scale_factor",
        "add_offset",
        "units",
        "calendar",
        "_Unsigned",
        "dtype",
        "_nc_type",
        "_nc_char_dim",
    }
)
_CHAR_TYPES = ("char", "char_latin1")


class StackedBackendArray(BackendArray):
    """One variable of many datasets, stacked along a new first axis.

    A selection reads the chosen datasets (each once, in store order) and the
    bounding box of the other axes in one ``Store.read_across`` call, then
    indexes the result in numpy. Thread safe; picklable when the store handle
    is read-only (a recipe, see ``atlas._pickle``).
    """

    __slots__ = (
        "char_encoding",
        "dtype",
        "fill",
        "name",
        "names",
        "nan_where",
        "shape",
        "store",
        "strlen",
    )

    def __init__(
        self,
        store: Store,
        name: str,
        names: tuple[str, ...],
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        fill: Any = None,
        strlen: int | None = None,
        char_encoding: str = "utf-8",
        nan_where: tuple[float, ...] = (),
    ) -> None:
        self.store = store
        self.nan_where = nan_where
        self.name = name
        self.names = names
        self.shape = shape
        self.dtype = dtype
        self.fill = fill
        self.strlen = strlen
        self.char_encoding = char_encoding

    def __getitem__(self, key: indexing.ExplicitIndexer) -> Any:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._raw_indexing_method
        )

    def _raw_indexing_method(self, key: tuple[Any, ...]) -> np.ndarray:
        store_rank = len(self.shape) - (1 if self.strlen is not None else 0)
        starts: list[int] = []
        counts: list[int] = []
        local: list[Any] = []
        chosen: np.ndarray = np.arange(0)
        for axis, (k, n) in enumerate(zip(key, self.shape, strict=True)):
            if isinstance(k, (int, np.integer)):
                idx = np.array([int(k) + n if k < 0 else int(k)])
                squeeze = True
            else:
                idx = np.arange(n)[k] if isinstance(k, slice) else np.asarray(k, dtype=np.int64)
                idx = np.where(idx < 0, idx + n, idx)
                squeeze = False
            if axis == 0:
                # Each dataset read once, in store order; repeats and order by numpy.
                chosen, inverse = np.unique(idx, return_inverse=True)
                loc: Any = inverse.reshape(-1)
                if len(chosen) == len(idx) and np.array_equal(chosen, idx):
                    loc = slice(None)
            elif axis >= store_rank:
                # The character axis: always read whole, indexed in numpy.
                loc = slice(None) if np.array_equal(idx, np.arange(n)) else idx
            elif idx.size == 0:
                lo, cnt, loc = 0, 0, idx
            else:
                lo = int(idx.min())
                cnt = int(idx.max()) - lo + 1
                loc = idx - lo
                if cnt == idx.size and np.array_equal(loc, np.arange(cnt)):
                    loc = slice(None)
            if 0 < axis < store_rank:
                starts.append(lo)
                counts.append(cnt)
            if squeeze:  # an integer: drop the axis (its box has one cell, bar the char axis)
                loc = 0 if isinstance(loc, slice) else int(np.asarray(loc).reshape(-1)[0])
            local.append(loc)
        box = self._read_box([self.names[i] for i in chosen], starts, counts, store_rank)
        out = box
        for axis in reversed(range(len(local))):
            loc = local[axis]
            if isinstance(loc, slice):
                continue
            out = np.take(out, loc, axis=axis)
        return np.asarray(out)

    def _read_box(
        self, names: list[str], starts: list[int], counts: list[int], store_rank: int
    ) -> np.ndarray:
        if not names or any(c == 0 for c in counts):
            shape = (len(names), *counts) + ((self.strlen,) if self.strlen is not None else ())
            return np.empty(shape, dtype=self.dtype)
        data, _lengths = self.store.read_across(
            self.name, names, starts, counts, fill=self.fill, nan_where=list(self.nan_where)
        )
        if self.strlen is None:
            return data
        return _encode_strings(np.asarray(data, dtype=object), self.strlen, self.char_encoding)


def _dataset_names(store: Store, datasets: str | Iterable[str] | None) -> list[str]:
    if datasets is None:
        return store.list()
    if isinstance(datasets, str):
        return store.list(datasets)
    return list(datasets)


def _coord_values(values: list[Any]) -> np.ndarray:
    """Per-dataset attribute values as an array: numbers as numbers (NaN where
    missing), anything else as objects (``None`` where missing)."""
    present = [v for v in values if v is not None]
    numeric = all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        for v in present
    )
    if present and numeric:
        if len(present) == len(values):
            return np.asarray(values)
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _char_length(per_dataset: list[dict[str, Any]], char_dim: str) -> int:
    """The largest length of ``char_dim`` any dataset records (``_nc_dim_lens``)."""
    n = 0
    for a in per_dataset:
        dim_lens = dict(zip(a.get("_nc_dims", []), a.get("_nc_dim_lens", []), strict=False))
        n = max(n, int(dim_lens.get(char_dim, 0)))
    return n


def _stackable(dataset: Dataset, char_dim: str) -> bool:
    """xarray's rule for concatenating characters, applied to one stored
    dataset: ``char_dim`` is no variable and every array using it is a char
    array with it as the character axis."""
    for a in dataset.arrays():
        if a == char_dim:
            return False
        attrs = dataset.array_attrs(a)
        is_char = attrs.get("_nc_type") in _CHAR_TYPES and attrs.get("_nc_char_dim")
        if char_dim in dataset.array_info(a)["dims"]:
            return False  # used as a stored axis, so not the last one
        if attrs.get("_nc_char_dim") == char_dim and not is_char:
            return False
    return True


class StackedDataStore(AbstractDataStore):
    """Raw (still CF-encoded) stacked variables for ``StoreBackendEntrypoint``."""

    def __init__(
        self,
        store: Store,
        variables: Sequence[str],
        names: list[str],
        dim: str,
        attrs_as_coords: Sequence[str],
        nan_pad_times: bool = False,
        mask_floats: bool = False,
    ) -> None:
        self.store = store
        self.nan_pad_times = nan_pad_times
        self.mask_floats = mask_floats
        self.names = tuple(names)
        self.dim = dim
        self._variables: dict[str, Variable] = {}
        self.coord_names: list[str] = []
        watch = sorted(_DECODING_ATTRS)
        infos = {v: store.describe_across(v, names, watch) for v in variables}
        for v, info in infos.items():
            if not bool(np.any(info["present"])):
                raise ArrayNotFoundError(
                    f"none of the {len(names)} datasets has an array {v!r}"
                )
        needs_dims = any(
            info["attrs"].get("_nc_type") in _CHAR_TYPES for info in infos.values()
        )
        keys = list(attrs_as_coords) + (["_nc_dims", "_nc_dim_lens"] if needs_dims else [])
        per_dataset = store.dataset_attrs(list(names), keys) if keys else []
        lengths: dict[str, np.ndarray] = {}
        # One size per dimension, the largest any variable needs (variables
        # held by different datasets would otherwise disagree).
        self.sizes: dict[str, int] = {}
        for info in infos.values():
            shapes = info["shapes"]
            for axis, d in enumerate(info["dims"]):
                n = int(shapes[:, axis].max()) if len(shapes) else 0
                self.sizes[d] = max(self.sizes.get(d, 0), n)
            char_dim = info["attrs"].get("_nc_char_dim")
            if info["attrs"].get("_nc_type") in _CHAR_TYPES and char_dim:
                n = _char_length(per_dataset, char_dim)
                self.sizes[char_dim] = max(self.sizes.get(char_dim, 0), n)
        # Whether xarray would concatenate each char variable's characters when
        # opening one dataset: only if nothing else in it uses the char dim.
        self.char_concat: dict[str, bool] = {}
        for v, info in infos.items():
            self._variables[v] = self._variable(v, info, per_dataset, lengths)
            char_dim = info["attrs"].get("_nc_char_dim")
            if info["attrs"].get("_nc_type") in _CHAR_TYPES and char_dim:
                source = store.dataset(names[int(np.argmax(info["present"]))])
                self.char_concat[v] = _stackable(source, char_dim)
        self._variables[dim] = Variable((dim,), np.array(self.names, dtype=object))
        for d, per_dataset_length in lengths.items():
            self._variables[f"{d}_length"] = Variable((dim,), per_dataset_length)
            self.coord_names.append(f"{d}_length")
        for key in attrs_as_coords:
            values = [a.get(key) for a in per_dataset]
            self._variables[key] = Variable((dim,), _coord_values(values))
            self.coord_names.append(key)

    def _variable(
        self,
        v: str,
        info: dict[str, Any],
        per_dataset: list[dict[str, Any]],
        lengths: dict[str, np.ndarray],
    ) -> Variable:
        differing = set(info["differing_attrs"])
        clash = sorted((differing & _DECODING_ATTRS) - {"_nc_attr_types"})
        if clash:
            raise InvalidInputError(
                f"array {v!r} has different {', '.join(clash)} in different datasets: "
                "decoding them as one variable would be wrong; open fewer datasets"
            )
        raw_attrs = {
            k: val for k, val in info["attrs"].items() if k not in differing or k == "_nc_attr_types"
        }
        visible = _visible_attrs(raw_attrs)
        shapes: np.ndarray = info["shapes"]
        store_dims = tuple(info["dims"])
        extent = tuple(self.sizes[d] for d in store_dims)
        for axis, d in enumerate(store_dims):
            n = shapes[:, axis].astype(np.int64)
            lengths[d] = np.maximum(lengths[d], n) if d in lengths else n
        dims = (self.dim, *store_dims)
        shape = (len(self.names), *extent)
        nc_type = raw_attrs.get("_nc_type")
        char_dim = raw_attrs.get("_nc_char_dim")
        strlen: int | None = None
        fill: Any = None
        nan_where: tuple[float, ...] = ()
        encoding: dict[str, Any] = {}
        if info["dtype"] == "str" and nc_type in _CHAR_TYPES and char_dim:
            strlen = self.sizes[char_dim]
            dims = (*dims, char_dim)
            shape = (*shape, strlen)
            dtype: np.dtype[Any] = np.dtype("S1")
            fill = ""
            if "_FillValue" in visible:
                visible["_FillValue"] = np.bytes_(str(visible["_FillValue"]).encode("latin-1"))
        elif info["dtype"] == "str":
            from xarray.coding.strings import create_vlen_dtype

            dtype = create_vlen_dtype(str)
            fill = ""
        else:
            dtype = np.dtype(info["dtype"])
            # Pad with what CF decoding masks, so padding reads as missing.
            for key in ("_FillValue", "missing_value"):
                value = visible.get(key)
                if value is not None and np.ndim(value) == 0:
                    fill = value
                    break
            if fill is not None and dtype.kind == "M":
                fill = None
            # Unmasked times are still decoded: a fill value (999999 days) would
            # not decode, so float times pad with NaN (NaT once decoded).
            times = " since " in str(visible.get("units", ""))
            if self.nan_pad_times and times and dtype.kind == "f":
                fill = np.nan
            nan_where = self._mask_in_rust(visible, dtype, encoding)
            if nan_where:
                fill = np.nan
        array = StackedBackendArray(
            self.store,
            v,
            self.names,
            shape,
            dtype,
            fill=fill,
            strlen=strlen,
            char_encoding="latin-1" if nc_type == "char_latin1" else "utf-8",
            nan_where=nan_where,
        )
        encoding.update({"dtype": dtype, "original_shape": shape})
        return Variable(dims, indexing.LazilyIndexedArray(array), visible, encoding)

    def _mask_in_rust(
        self, visible: dict[str, Any], dtype: np.dtype[Any], encoding: dict[str, Any]
    ) -> tuple[float, ...]:
        """For a float variable that CF decoding would only mask (no scale or
        offset), the fill values the Rust read turns into NaN while copying;
        they move from ``visible`` to ``encoding`` as xarray's decoding moves
        them. Then decoding has nothing left to do, instead of a pass over the
        whole padded array. Empty when xarray must decode it."""
        if not self.mask_floats or dtype.kind != "f":
            return ()
        if "scale_factor" in visible or "add_offset" in visible:
            return ()
        values: list[float] = []
        for key in ("_FillValue", "missing_value"):
            if key in visible:
                values.extend(float(x) for x in np.atleast_1d(visible[key]))
        if not values:
            return ()
        for key in ("_FillValue", "missing_value"):
            if key in visible:
                encoding[key] = visible.pop(key)
        return tuple(values)

    def get_variables(self) -> Mapping[str, Variable]:
        return FrozenDict(self._variables)

    def get_attrs(self) -> Mapping[str, Any]:
        return FrozenDict()

    def get_dimensions(self) -> Mapping[str, int]:
        return FrozenDict()

    def close(self) -> None:
        pass


def open_stacked(
    store: Store | str | os.PathLike[str],
    variables: str | Sequence[str],
    datasets: str | Iterable[str] | None = None,
    *,
    dim: str = "dataset",
    attrs_as_coords: Sequence[str] = (),
    chunks: int | Mapping[str, int] | None = None,
    decode_cf: bool = True,
    mask_and_scale: bool = True,
    decode_times: bool = True,
    concat_characters: bool = True,
    decode_coords: bool = True,
    use_cftime: bool | None = None,
    decode_timedelta: bool | None = None,
) -> XrDataset:
    """``variables`` of many datasets as one lazy ``xarray.Dataset``.

    ``store`` is a store path or a read-only ``atlas.Store``; ``datasets`` is
    ``None`` (every dataset), a glob (``*``, ``?``) or a list of names. Each
    variable gets the leading dimension ``dim``; other axes are padded to the
    largest extent with the variable's ``_FillValue`` (NaN after CF decoding).
    Coordinates: ``dim`` (the dataset names), ``<axis>_length`` (each
    dataset's true extent of every stacked axis; 0 where it lacks the
    variables) and one per key of ``attrs_as_coords`` (that dataset
    attribute's value, NaN or ``None`` where missing). Variable attributes are
    those the datasets share; attributes that steer decoding (``_FillValue``,
    ``scale_factor``, ``units`` …) must agree, else ``InvalidInputError``.

    ``chunks`` (an int: datasets per chunk; or a mapping of dimension to
    chunk size) returns dask arrays with one task per chunk; the decoder flags
    are ``xarray.open_dataset``'s.
    """
    handle = _store_of(store)
    names = _dataset_names(handle, datasets)
    wanted = [variables] if isinstance(variables, str) else list(variables)
    if dim in wanted:
        raise InvalidInputError(f"dim {dim!r} is also a variable name; choose another dim=")
    if not decode_cf:
        mask_and_scale = decode_times = concat_characters = decode_coords = False
        decode_timedelta = False
    data_store = StackedDataStore(
        handle,
        wanted,
        names,
        dim,
        attrs_as_coords,
        nan_pad_times=decode_times and not mask_and_scale,
        mask_floats=mask_and_scale,
    )
    concat: bool | dict[str, bool] = concat_characters
    if concat_characters and data_store.char_concat:
        concat = {v: data_store.char_concat.get(v, True) for v in wanted}
    ds = StoreBackendEntrypoint().open_dataset(
        data_store,
        mask_and_scale=mask_and_scale,
        decode_times=decode_times,
        concat_characters=concat,  # type: ignore[arg-type]
        decode_coords=decode_coords,
        use_cftime=use_cftime,
        decode_timedelta=decode_timedelta,
    )
    ds = ds.set_coords(data_store.coord_names)
    if chunks is not None:
        spec = {dim: chunks} if isinstance(chunks, int) else dict(chunks)
        ds = ds.chunk(spec)
    return ds
