"""Writes from xarray: :func:`to_atlas` and :func:`write_many`.

A dataset is encoded by xarray's own CF encoder (the one ``to_netcdf`` uses:
times to numbers with ``units``, ``scale_factor``/``_FillValue`` from
``encoding``, bools to ``int8``, fixed-width bytes to ``char`` arrays), then
stored with the same bookkeeping ``atlas import`` records for NetCDF files
(``_nc_dims``/``_nc_dim_lens``, ``_nc_attr_types``, ``_nc_type``/
``_nc_char_dim`` for ``char`` variables, ``_nc_unlimited``). So
``xr.open_dataset(store, engine="atlas", group=name)`` decodes it back to the
dataset that was written: ``xr.testing.assert_identical`` holds.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Literal

import numpy as np
from xarray import conventions
from xarray.backends.common import ensure_dtype_not_object
from xarray.coding import strings
from xarray.core.dataset import Dataset as XrDataset
from xarray.core.variable import Variable

from ._atlas import Store
from ._specs import ArraySpec, DatasetSpec
from .errors import InvalidInputError, StoreNotFoundError

__all__ = ["to_atlas", "write_many"]

Mode = Literal["w-", "w"]

# numpy dtype → the NetCDF type name the engine turns back into that dtype.
_NC_NAMES: dict[str, str] = {
    "int8": "byte",
    "uint8": "ubyte",
    "int16": "short",
    "uint16": "ushort",
    "int32": "int",
    "uint32": "uint",
    "int64": "int64",
    "uint64": "uint64",
    "float32": "float",
    "float64": "double",
}
_BOOKKEEPING = "_nc_"


def _nc_type_of(value: Any) -> str | None:
    """The NetCDF type to record for an attribute value: only numpy-typed
    numbers (Python numbers take the engine's defaults, as for imports)."""
    if isinstance(value, np.ndarray | np.generic) and not isinstance(value, np.bool_):
        return _NC_NAMES.get(np.dtype(value.dtype).name)
    return None


def _attr_value(value: Any) -> Any:
    """An attribute value in a form the store takes (tuples as lists, 0-d
    arrays as scalars, bytes as latin-1 text)."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, bytes):
        # A char variable's _FillValue (numpy.bytes_); the engine turns it back
        # into bytes for char variables.
        return value.decode("latin-1")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def _set_attrs(
    attrs: Mapping[Hashable, Any],
    set_one: Any,
    where: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    types: list[str] = []
    for key, value in attrs.items():
        k = str(key)
        if k.startswith(_BOOKKEEPING):
            raise InvalidInputError(
                f"attribute {k!r} of {where}: names starting with {_BOOKKEEPING!r} are the "
                "store's NetCDF bookkeeping"
            )
        nc = _nc_type_of(value)
        if nc is not None:
            types.append(f"{nc}:{k}")
        set_one(k, _attr_value(value))
    for k, value in (extra or {}).items():
        set_one(k, value)
    if types:
        set_one("_nc_attr_types", types)


def _char_cells(data: np.ndarray) -> tuple[np.ndarray, str]:
    """An ``S1`` array's last axis joined into ``str`` cells, and the ``_nc_type``
    that says how to encode them again (``char`` for UTF-8, else ``char_latin1``)."""
    if data.shape[-1] == 0:
        joined = np.zeros(data.shape[:-1], dtype="S1")
    else:
        joined = np.ascontiguousarray(data).view(f"S{data.shape[-1]}")[..., 0]
    raw: list[bytes] = joined.ravel().tolist()
    try:
        cells = [b.decode("utf-8") for b in raw]
        nc_type = "char"
    except UnicodeDecodeError:
        cells = [b.decode("latin-1") for b in raw]
        nc_type = "char_latin1"
    out = np.empty(len(cells), dtype=object)
    out[:] = cells
    return out.reshape(joined.shape), nc_type


def _array_spec(name: str, var: Variable) -> ArraySpec:
    data = np.asarray(var.values)
    dims = [str(d) for d in var.dims]
    extra: dict[str, Any] = {}
    if data.dtype.kind == "S" and data.dtype.itemsize == 1 and data.ndim >= 1:
        cells, nc_type = _char_cells(data)
        extra = {"_nc_type": nc_type, "_nc_char_dim": dims[-1]}
        dims, data = dims[:-1], cells
        dtype: Any = str
    elif data.dtype.kind in "OU":
        dtype = str
    elif data.dtype.kind == "S":
        raise InvalidInputError(f"variable {name!r}: byte strings of width {data.dtype.itemsize}")
    else:
        dtype = data.dtype
    spec: ArraySpec = {"dims": dims, "dtype": dtype, "shape": list(data.shape)}
    if data.size:
        spec["data"] = data
    attrs: dict[str, Any] = {}
    _set_attrs(var.attrs, attrs.__setitem__, f"variable {name!r}", extra)
    spec["attrs"] = attrs
    return spec


def _is_char_without_string_dim(var: Variable, shape: tuple[int, ...] | None) -> bool:
    """A ``char`` variable whose file had no separate string dimension (xarray
    keeps it as ``S1`` with the file's shape)."""
    is_bytes = var.dtype.kind == "S" or strings.is_bytes_dtype(var.dtype)
    if not is_bytes or var.ndim == 0 or shape is None or tuple(shape) != var.shape:
        return False
    return var.dtype == np.dtype("S1") or all(len(b) <= 1 for b in np.asarray(var.values).ravel())


def _keep_char_width(var: Variable, shape: tuple[int, ...] | None) -> Variable:
    """Fixed-width bytes read from a file keep the file's character dimension
    length (``shape``, the source's ``encoding["original_shape"]``), not just
    the longest value's."""
    is_bytes = var.dtype.kind == "S" or strings.is_bytes_dtype(var.dtype)
    if not is_bytes or not shape or len(shape) != var.ndim + 1:
        return var
    width = int(shape[-1])
    if var.dtype.kind == "S" and var.dtype.itemsize >= width:
        return var
    return var.copy(data=np.asarray(var.values).astype(f"S{width}"))


def _encode(xds: XrDataset, encoding: Mapping[Hashable, Mapping[str, Any]] | None) -> tuple[
    dict[Hashable, Variable], dict[Hashable, Any]
]:
    if encoding:
        xds = xds.copy()
        for k, enc in encoding.items():
            xds[k].encoding.update(enc)
    variables, attrs = conventions.encode_dataset_coordinates(xds)
    variables, attrs = conventions.cf_encoder(variables, attrs)
    # As to_netcdf with the netCDF4 backend does: object arrays get a real
    # dtype, unicode stays text, fixed-width bytes become char arrays with a
    # string<N> dimension (or the one recorded in encoding["char_dim_name"]).
    coders = [strings.EncodedStringCoder(allows_unicode=True), strings.CharacterArrayCoder()]
    out: dict[Hashable, Variable] = {}
    for k, var in variables.items():
        var = ensure_dtype_not_object(var, name=k)  # as WritableCFDataStore.encode
        source = xds.variables.get(k)
        shape = None if source is None else source.encoding.get("original_shape")
        if _is_char_without_string_dim(var, shape):
            # char X(N_PROF) read from a file: one character per cell, the
            # last axis is the character axis already.
            var = var.copy(data=np.asarray(var.values).astype("S1"))
            out[k] = var
            continue
        var = _keep_char_width(var, shape)
        for coder in coders:
            var = coder.encode(var, name=k)
        out[k] = var
    return out, dict(attrs)


def _dataset_spec(
    name: str,
    xds: XrDataset,
    encoding: Mapping[Hashable, Mapping[str, Any]] | None,
) -> DatasetSpec:
    variables, attrs = _encode(xds, encoding)
    dims: dict[str, int] = {}
    for var in variables.values():
        for d, n in zip(var.dims, var.shape, strict=True):
            dims.setdefault(str(d), int(n))
    arrays = {str(k): _array_spec(str(k), var) for k, var in variables.items()}
    extra: dict[str, Any] = {}
    if dims:
        extra["_nc_dims"] = list(dims)
        extra["_nc_dim_lens"] = list(dims.values())
    unlimited = xds.encoding.get("unlimited_dims") or ()
    if isinstance(unlimited, str):
        unlimited = [unlimited]
    if unlimited:
        extra["_nc_unlimited"] = [str(u) for u in unlimited]
    ds_attrs: dict[str, Any] = {}
    _set_attrs(attrs, ds_attrs.__setitem__, f"dataset {name!r}", extra)
    return {"name": name, "attrs": ds_attrs, "arrays": arrays}


# Cell bytes gathered before the datasets gathered so far are created in one
# `create_datasets` call (as `atlas import` batches files).
_BATCH_BYTES = 32 << 20


def _spec_bytes(spec: DatasetSpec) -> int:
    return sum(
        int(getattr(a.get("data"), "nbytes", 0)) for a in spec.get("arrays", {}).values()
    )


def _writable(store: Store | str | os.PathLike[str]) -> tuple[Store, bool]:
    """The store to write to, and whether it was opened here (then it is
    flushed and closed here too)."""
    if isinstance(store, Store):
        if store.mode != "a":
            raise InvalidInputError(
                f"store {store.path} is open read-only: open it with mode='a' to write"
            )
        return store, False
    path = os.fspath(store)
    try:
        return Store.open(path, mode="a"), True
    except StoreNotFoundError:
        return Store.create(path), True


def write_many(
    store: Store | str | os.PathLike[str],
    items: Iterable[tuple[str, XrDataset]],
    *,
    mode: Mode = "w-",
    encoding: Mapping[Hashable, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Writes each ``(name, xarray.Dataset)`` of ``items`` as one dataset of
    ``store`` (a path, created if missing, or a ``Store`` opened with
    ``mode="a"``) and commits them with **one** flush; returns the names.

    ``mode="w-"`` refuses names that exist (``AlreadyExistsError``); ``"w"``
    replaces them. ``encoding`` maps variable names to xarray encodings
    (``dtype``, ``scale_factor``, ``_FillValue``, ``units`` …) applied to every
    dataset. If a write fails nothing is flushed: the store keeps its last
    commit (a handle opened here is closed without flushing).

    The datasets are created through :meth:`Store.create_datasets`, about
    32 MiB of cells per call, instead of one call per array.
    """
    if mode not in ("w-", "w"):
        raise InvalidInputError(f"mode must be 'w-' (new dataset) or 'w' (replace), not {mode!r}")
    handle, owned = _writable(store)
    names: list[str] = []
    batch: list[DatasetSpec] = []
    batched: set[str] = set()
    size = 0

    def create() -> None:
        nonlocal size
        if batch:
            handle.create_datasets(batch)
        batch.clear()
        batched.clear()
        size = 0

    try:
        for name, xds in items:
            spec = _dataset_spec(name, xds, encoding)
            if name in batched:
                # A name given twice: the first is created before the second
                # is refused ("w-") or replaces it ("w"), as one at a time.
                create()
            if mode == "w" and name in handle:
                handle.delete_dataset(name)
            batch.append(spec)
            batched.add(name)
            names.append(name)
            size += _spec_bytes(spec)
            if size >= _BATCH_BYTES:
                create()
        create()
        handle.flush()
    finally:
        if owned:
            handle.close()
    return names


def to_atlas(
    ds: XrDataset,
    store: Store | str | os.PathLike[str],
    name: str,
    *,
    mode: Mode = "w-",
    encoding: Mapping[Hashable, Mapping[str, Any]] | None = None,
) -> None:
    """Writes ``ds`` as the dataset ``name`` of ``store`` and flushes; see
    :func:`write_many`. ``xr.open_dataset(store, engine="atlas", group=name)``
    reads it back identical."""
    write_many(store, [(name, ds)], mode=mode, encoding=encoding)
