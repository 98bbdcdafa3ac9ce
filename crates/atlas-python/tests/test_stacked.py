"""atlas.open_stacked: many datasets as one xarray object, checked against
per-file reads of real Argo profiles and against a hand-built ragged store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr

import atlas

DECODINGS: list[dict[str, bool]] = [
    {},
    {"decode_cf": False},
    {"mask_and_scale": False},
    {"decode_times": False},
]


def _as_datetime64(cells: np.ndarray) -> np.ndarray:
    """cftime objects (xarray's fallback for times out of datetime64[ns] range)
    as datetime64[ns]; the ones out of its range as NaT."""

    def one(c: Any) -> np.datetime64:
        if c is None or isinstance(c, float):
            return np.datetime64("NaT")
        if not 1678 <= c.year <= 2261:
            return np.datetime64("NaT")
        return np.datetime64(c.isoformat(), "ns")

    flat = [one(c) for c in np.asarray(cells).ravel()]
    return np.array(flat, dtype="datetime64[ns]").reshape(np.shape(cells))


# With mask_and_scale=False some Argo files' time fill values (999999 days) do
# not fit datetime64[ns]: xarray warns and decodes with cftime, for the file as
# for the store.
TIME_FALLBACK = "ignore:Unable to decode time axis:xarray.coding.common.SerializationWarning"


def _padding_is_missing(got: np.ndarray, box: tuple[int, ...]) -> np.ndarray:
    """The cells of ``got`` outside the box ``[0, box)``."""
    mask = np.ones(got.shape, dtype=bool)
    mask[tuple(slice(0, n) for n in box)] = False
    return got[mask]


# Datasets per open_stacked call in the per-file comparison: the CI sample is
# one batch; ATLAS_ARGO_ALL=1 (3,000 profiles) makes twelve.
BATCH = 250


def _compare_batch(
    store: atlas.Store, files: list[Path], variables: list[str], decoding: dict[str, bool]
) -> int:
    """Every variable of every file against the stacked batch; returns the
    number of (file, variable) pairs compared."""
    names = [f.stem for f in files]
    held = {v for n in names for v in store[n].arrays()}
    variables = [v for v in variables if v in held]  # a variable no dataset has is an error
    stacked = atlas.open_stacked(store, variables, names, **decoding).load()
    assert stacked["dataset"].values.tolist() == names
    n_compared = 0
    for i, f in enumerate(files):
        with xr.open_dataset(f, engine="netcdf4", **decoding) as ref_ds:
            for v in variables:
                values = stacked[v].values
                if v not in ref_ds.variables:
                    for d in stacked[v].dims[1:]:
                        if f"{d}_length" in stacked.coords:
                            assert int(stacked[f"{d}_length"][i]) == 0 or d in ref_ds.dims
                    continue
                ref = ref_ds[v]
                box = tuple(ref.sizes[d] for d in stacked[v].dims[1:])
                got = stacked[v].isel(dataset=i).isel({d: slice(0, ref.sizes[d]) for d in ref.dims})
                if ref.dtype.kind == "M" and got.dtype == object:
                    # Out-of-range times elsewhere in the batch made xarray
                    # fall back to cftime for the stacked variable.
                    got = got.copy(data=_as_datetime64(got.values))
                if ref.dtype == object and got.dtype.kind == "M":
                    # The reverse: xarray guesses a time variable's dtype from
                    # its first and last cells, so a stack decodes to
                    # datetime64 and times beyond its range (the 999999-day
                    # fill, mask_and_scale=False) are NaT, cftime in the file.
                    ref = ref.copy(data=_as_datetime64(ref.values))
                try:
                    xr.testing.assert_equal(ref.variable, got.variable)
                except AssertionError as e:
                    raise AssertionError(f"{f.name} {v}: {e}") from None
                for k, val in got.attrs.items():  # the shared attributes are the file's
                    assert xr.core.utils.equivalent(ref.attrs[k], val), (f.name, v, k)
                for d in ref.dims:
                    if f"{d}_length" in stacked.coords:
                        assert int(stacked[f"{d}_length"][i]) == ref.sizes[d], (f.name, v, d)
                pad = _padding_is_missing(np.asarray(values[i]), box)
                masked = decoding.get("mask_and_scale", True) and decoding.get("decode_cf", True)
                if pad.size and values.dtype.kind == "f" and masked:
                    assert np.isnan(pad).all(), f"{v} padding of {names[i]} is not NaN"
                elif pad.size and "_FillValue" in stacked[v].attrs and values.dtype.kind in "iuf":
                    assert (pad == stacked[v].attrs["_FillValue"]).all(), v
                n_compared += 1
    return n_compared


@pytest.mark.filterwarnings(TIME_FALLBACK)
@pytest.mark.parametrize("decoding", DECODINGS, ids=lambda d: ",".join(d) or "defaults")
def test_stacked_equals_per_file_reads(
    argo_files: list[Path], argo_store: Path, decoding: dict[str, bool]
) -> None:
    """Every variable of every imported profile: open_stacked (in batches of
    BATCH datasets) cropped to the file's extents equals the netCDF4 engine's
    read of the file, and the padding is missing (NaN) or the fill value."""
    store = atlas.Store.open(argo_store)
    variables = store.array_names()
    assert len(variables) > 50
    n_compared = 0
    for b in range(0, len(argo_files), BATCH):
        n_compared += _compare_batch(store, argo_files[b : b + BATCH], variables, decoding)
    assert n_compared >= len(argo_files) * 50


def test_stacked_comparison_can_fail(argo_files: list[Path], argo_store: Path) -> None:
    names = [f.stem for f in argo_files]
    stacked = atlas.open_stacked(argo_store, ["TEMP"], names)
    ref = xr.open_dataset(argo_files[1], engine="netcdf4")["TEMP"]
    got = stacked["TEMP"].isel(dataset=0).isel(
        N_PROF=slice(0, ref.sizes["N_PROF"]), N_LEVELS=slice(0, ref.sizes["N_LEVELS"])
    )
    with pytest.raises(AssertionError):
        xr.testing.assert_equal(ref.variable, got.variable)


def test_stacked_selections_match_numpy(argo_files: list[Path], argo_store: Path) -> None:
    names = [f.stem for f in argo_files]
    lazy = atlas.open_stacked(argo_store, ["TEMP", "JULD", "PLATFORM_NUMBER"], names)
    full = lazy.load()
    lazy = atlas.open_stacked(argo_store, ["TEMP", "JULD", "PLATFORM_NUMBER"], names)
    assert not lazy["TEMP"].variable._in_memory
    selections: list[dict[str, Any]] = [
        {"dataset": [3, 1, 1, 0]},
        {"dataset": slice(None, None, -2), "N_LEVELS": slice(5, 40, 3)},
        {"dataset": 2},
        {"dataset": -1, "N_PROF": 0, "N_LEVELS": [7, 0, 2]},
        {"dataset": slice(2, 2)},
        {"N_LEVELS": slice(10_000, None)},
    ]
    for sel in selections:
        for v in ("TEMP", "JULD", "PLATFORM_NUMBER"):
            sub = {k: s for k, s in sel.items() if k in full[v].dims}
            xr.testing.assert_identical(full[v].isel(sub), lazy[v].isel(sub).load())


def test_stacked_glob_and_errors(argo_files: list[Path], argo_store: Path) -> None:
    store = atlas.Store.open(argo_store)
    first = argo_files[0].stem
    by_glob = atlas.open_stacked(store, "TEMP", datasets=first[:3] + "*")
    assert set(by_glob["dataset"].values) == {n for n in store.list() if n.startswith(first[:3])}
    with pytest.raises(KeyError):
        atlas.open_stacked(store, ["NO_SUCH_VARIABLE"])
    with pytest.raises(KeyError):
        atlas.open_stacked(store, ["TEMP"], ["no_such_profile"])
    with pytest.raises(ValueError, match="dim"):
        atlas.open_stacked(store, ["TEMP"], dim="TEMP")


def test_stacked_dask_makes_few_tasks(argo_files: list[Path], argo_store: Path) -> None:
    names = [f.stem for f in argo_files]
    chunked = atlas.open_stacked(argo_store, ["TEMP", "PSAL"], names, chunks=4)
    temp = chunked["TEMP"].data
    n_chunks = len(temp.chunks[0])
    assert n_chunks == -(-len(names) // 4)
    # One read task per chunk of datasets (plus xarray's decoding steps, which
    # dask fuses); never one per file.
    assert len(dict(temp.__dask_graph__())) <= 4 * n_chunks + 2
    eager = atlas.open_stacked(argo_store, ["TEMP", "PSAL"], names).load()
    with dask.config.set(scheduler="threads"):
        xr.testing.assert_identical(eager, chunked.compute())
        assert float(chunked["TEMP"].mean()) == pytest.approx(float(eager["TEMP"].mean()))


def _ragged_store(path: Path) -> list[str]:
    """Four datasets: ragged float and int arrays, strings, one lacking `t`."""
    with atlas.Store.create(path) as s:
        for i, n in enumerate([3, 5, 1]):
            ds = s.create_dataset(f"st{i}")
            ds.define_array("t", "float64", ["z"], [n], fill_value=-1.0)
            ds.write("t", np.arange(n, dtype="f8") + 10 * i)
            ds.set_array_attr("t", "_FillValue", -1.0)
            ds.set_array_attr("t", "units", "K")
            ds.set_array_attr("t", "note", f"only in st{i}")
            ds.define_array("k", "int16", ["z"], [n])
            ds.write("k", np.arange(n, dtype="i2") + 1)
            ds.define_array("name", str, ["c"], [2])
            ds.write("name", np.array([f"é{i}", "x" * i], dtype=object))
            ds.set_attr("lat", -30.5 + i)
            ds.set_attr("label", f"station {i}")
        empty = s.create_dataset("st3")
        empty.define_array("k", "int16", ["z"], [2])
        empty.write("k", np.array([7, 8], dtype="i2"))
        empty.set_attr("label", "no t")
    return ["st0", "st1", "st2", "st3"]


def test_stacked_ragged_native_datasets(store_path: Path) -> None:
    names = _ragged_store(store_path)
    got = atlas.open_stacked(store_path, ["t", "k", "name"], attrs_as_coords=["lat", "label"])
    assert got["dataset"].values.tolist() == names
    assert got["t"].shape == (4, 5)
    nan = np.nan
    np.testing.assert_array_equal(
        got["t"].values,
        [[0, 1, 2, nan, nan], [10, 11, 12, 13, 14], [20, nan, nan, nan, nan], [nan] * 5],
    )
    assert got["t"].attrs == {"units": "K"}, "attributes that differ are dropped"
    assert got["t"].encoding["_FillValue"] == -1.0
    raw = atlas.open_stacked(store_path, "t", decode_cf=False)
    assert (raw["t"].values[0, 3:] == -1.0).all()
    # No fill value: ints pad with zero, the lengths say where data ends.
    np.testing.assert_array_equal(
        got["k"].values, [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5], [1, 0, 0, 0, 0], [7, 8, 0, 0, 0]]
    )
    assert got["k"].dtype == np.int16
    assert got["z_length"].values.tolist() == [3, 5, 1, 2]
    assert got["name"].values.tolist() == [["é0", ""], ["é1", "x"], ["é2", "xx"], ["", ""]]
    np.testing.assert_array_equal(got["lat"].values, [-30.5, -29.5, -28.5, nan])
    assert got["label"].values.tolist() == ["station 0", "station 1", "station 2", "no t"]
    assert set(got.coords) == {"dataset", "z_length", "c_length", "lat", "label"}
    only = atlas.open_stacked(store_path, "t", ["st2", "st0"], dim="station")
    assert only["t"].dims == ("station", "z")
    np.testing.assert_array_equal(only["t"].values, [[20, nan, nan], [0, 1, 2]])


def test_stacked_refuses_conflicting_decoding_attrs(store_path: Path) -> None:
    with atlas.Store.create(store_path) as s:
        for i, units in enumerate(["K", "degC"]):
            ds = s.create_dataset(f"d{i}")
            ds.define_array("t", "float32", ["z"], [2])
            ds.write("t", [1.0, 2.0])
            ds.set_array_attr("t", "units", units)
    with pytest.raises(atlas.InvalidInputError, match="units"):
        atlas.open_stacked(store_path, ["t"])


def test_read_across_pads_and_reports_lengths(store_path: Path) -> None:
    _ragged_store(store_path)
    store = atlas.Store.open(store_path)
    data, lengths = store.read_across("k", ["st1", "st0"], start=[1], count=[3], fill=-5)
    np.testing.assert_array_equal(data, [[2, 3, 4], [2, 3, -5]])
    np.testing.assert_array_equal(lengths, [[3], [2]])
    data, lengths = store.read_across("t", ["st3", "st2"])
    np.testing.assert_array_equal(data, [[-1.0], [20.0]])  # the schema's fill value
    np.testing.assert_array_equal(lengths, [[0], [1]])
    data, _ = store.read_across("t", ["st0", "st1"], count=[4], fill=np.nan, nan_where=[1.0, 13.0])
    np.testing.assert_array_equal(data, [[0, np.nan, 2, np.nan], [10, 11, 12, np.nan]])
    data, _ = store.read_across("k", ["st0"], nan_where=[1.0])  # ints are never masked
    np.testing.assert_array_equal(data, [[1, 2, 3]])
    with pytest.raises(atlas.InvalidInputError):
        store.read_across("t", ["st0"], start=[0, 0])


def test_read_across_without_padding(store_path: Path) -> None:
    """Every dataset with the array and the box inside each: the core's
    stacked read (each array decoded into its row, in parts on every core)
    gives the padded path's values, masks included; one ragged dataset
    sends the read down the padded path, with the same rows."""
    n = 600
    names = [f"e{i:03d}" for i in range(n)]
    with atlas.Store.create(store_path) as s:
        for i, name in enumerate(names):
            ds = s.create_dataset(name)
            ds.define_array("v", "float32", ["z"], [4])
            ds.write("v", np.arange(4, dtype="f4") + i)
            ds.define_array("w", "float32", ["z"], [3 if i == n - 1 else 4])
            ds.write("w", np.arange(3 if i == n - 1 else 4, dtype="f4") + i)
            ds.define_array("c", str, ["c"], [2])
            ds.write("c", np.array([f"a{i}", "b"], dtype=object))
    store = atlas.Store.open(store_path)
    want = np.arange(4, dtype="f4")[None, :] + np.arange(n, dtype="f4")[:, None]
    masked = want.copy()
    masked[masked == 5.0] = np.nan
    data, lengths = store.read_across("v", names, nan_where=[5.0])
    assert data.dtype == np.float32
    # The core's buffer, handed to numpy (the padded path fills a fresh
    # numpy.empty array, whose base is None).
    assert data.base is not None
    np.testing.assert_array_equal(data, masked)
    np.testing.assert_array_equal(lengths, np.full((n, 1), 4))
    data, lengths = store.read_across("v", names[::-1], start=[1], count=[2])
    np.testing.assert_array_equal(data, want[::-1, 1:3])
    np.testing.assert_array_equal(lengths, np.full((n, 1), 2))
    # One shorter `w`: padded, every other row as in `v`.
    data, lengths = store.read_across("w", names)
    assert data.base is None
    np.testing.assert_array_equal(data[:-1], want[:-1])
    np.testing.assert_array_equal(data[-1], [n - 1, n, n + 1, np.nan])
    assert lengths[-1, 0] == 3
    data, _ = store.read_across("c", names[:3])
    assert data.tolist() == [["a0", "b"], ["a1", "b"], ["a2", "b"]]
    with pytest.raises(KeyError):
        store.read_across("v", [*names, "no_such_dataset"])


def test_shared_dimension_takes_the_largest_extent(store_path: Path) -> None:
    """Two variables on one dimension, held by different datasets: one size."""
    with atlas.Store.create(store_path) as s:
        a = s.create_dataset("a")
        a.define_array("p", "float32", ["z"], [5])
        a.write("p", np.arange(5, dtype="f4"))
        b = s.create_dataset("b")
        b.define_array("p", "float32", ["z"], [2])
        b.write("p", [7, 8])
        b.define_array("q", "float32", ["z"], [2])
        b.write("q", [1, 2])
    got = atlas.open_stacked(store_path, ["p", "q"])
    assert got.sizes["z"] == 5
    np.testing.assert_array_equal(got["q"].values, [[np.nan] * 5, [1, 2, np.nan, np.nan, np.nan]])
    assert got["z_length"].values.tolist() == [5, 2]
