"""The xarray engine: identity with the netCDF4 engine on real Argo profiles,
lazy outer indexing, variable selection, pickling of opened datasets."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import atlas
from atlas.xarray_backend import AtlasBackendEntrypoint

DECODINGS: list[dict[str, bool]] = [
    {},
    {"decode_cf": False},
    {"mask_and_scale": False},
    {"decode_times": False},
    {"concat_characters": False},
]


def _name(f: Path) -> str:
    return f.stem


def test_engine_is_registered() -> None:
    assert "atlas" in xr.backends.list_engines()
    assert isinstance(xr.backends.list_engines()["atlas"], AtlasBackendEntrypoint)


# With mask_and_scale=False some Argo files' time fill values (999999 days) do
# not fit datetime64[ns]: xarray warns and decodes with cftime, for the file as
# for the store (seen in the run on all 3,000 profiles).
@pytest.mark.filterwarnings("ignore:Unable to decode time axis:xarray.coding.common.SerializationWarning")
@pytest.mark.parametrize("decoding", DECODINGS, ids=lambda d: ",".join(d) or "defaults")
def test_identical_to_netcdf4_engine(
    argo_files: list[Path], argo_store: Path, decoding: dict[str, bool]
) -> None:
    store = atlas.Store.open(argo_store)
    for f in argo_files:
        expected = xr.open_dataset(f, engine="netcdf4", **decoding)
        got = xr.open_dataset(argo_store, engine="atlas", group=_name(f), **decoding)
        xr.testing.assert_identical(expected, got)
        # The same through an open Store handle.
        xr.testing.assert_identical(
            expected, xr.open_dataset(store, engine="atlas", group=_name(f), **decoding)
        )
        for v in expected.variables:
            for key in ("dtype", "_FillValue", "units", "calendar"):
                a, b = expected[v].encoding.get(key), got[v].encoding.get(key)
                assert (a == b) or (a is not None and b is not None and np.isnan(a) and np.isnan(b)), (
                    f"{f.name} {v} encoding[{key!r}]: {a!r} vs {b!r}"
                )
        assert not any(k.startswith("_nc_") for k in got.attrs)
        assert not any(k.startswith("_nc_") for v in got.variables for k in got[v].attrs)


@pytest.mark.filterwarnings("ignore::xarray.coding.common.SerializationWarning")
@pytest.mark.parametrize("decoding", [{}, {"decode_cf": False}], ids=["defaults", "decode_cf"])
def test_sample_files_identical_to_netcdf4_engine(
    sample_files: list[Path], atlas_tool: Path, tmp_path: Path, decoding: dict[str, bool]
) -> None:
    """The Iris and ESMValTool samples: varied CF grids, NetCDF-4 and classic,
    NCO's NUL-terminated `char` attributes, a scalar `char` variable."""
    for i, f in enumerate(sample_files):
        store = tmp_path / f"s{i}"
        subprocess.run(
            [str(atlas_tool), "import", str(store), str(f), "--quiet"],
            check=True,
            capture_output=True,
        )
        (name,) = atlas.Store.open(store).list()
        expected = xr.open_dataset(f, engine="netcdf4", **decoding)
        got = xr.open_dataset(store, engine="atlas", group=name, **decoding)
        try:
            xr.testing.assert_identical(expected, got)
        except AssertionError as e:
            raise AssertionError(f"{f}: {e}") from None


def test_identity_check_can_fail(argo_files: list[Path], argo_store: Path) -> None:
    a, b = argo_files[0], argo_files[1]
    with pytest.raises(AssertionError):
        xr.testing.assert_identical(
            xr.open_dataset(a, engine="netcdf4"),
            xr.open_dataset(argo_store, engine="atlas", group=_name(b)),
        )


def test_float32_attribute_types_come_back(argo_files: list[Path], argo_store: Path) -> None:
    f = argo_files[0]
    got = xr.open_dataset(argo_store, engine="atlas", group=_name(f), decode_cf=False)
    ref = xr.open_dataset(f, engine="netcdf4", decode_cf=False)
    for v in ref.variables:
        for k, val in ref[v].attrs.items():
            assert type(got[v].attrs[k]) is type(val), (v, k)


def test_lazy_outer_indexing_matches_numpy(argo_files: list[Path], argo_store: Path) -> None:
    f = argo_files[0]
    ref = xr.open_dataset(f, engine="netcdf4").load()
    lazy = xr.open_dataset(argo_store, engine="atlas", group=_name(f))
    temp = lazy["TEMP"]
    assert not temp.variable._in_memory
    n_prof, n_lev = temp.shape
    selections = [
        {"N_LEVELS": slice(2, 9)},
        {"N_LEVELS": slice(None, None, 3)},
        {"N_LEVELS": slice(None, None, -2)},
        {"N_LEVELS": [5, 1, 1, 3]},
        {"N_PROF": 0, "N_LEVELS": [0, n_lev - 1]},
        {"N_LEVELS": slice(4, 4)},
        {"N_LEVELS": -1},
    ]
    for sel in selections:
        xr.testing.assert_identical(ref["TEMP"].isel(sel), temp.isel(sel).load())
        xr.testing.assert_identical(
            ref["PLATFORM_NUMBER"].isel(N_PROF=[0]), lazy["PLATFORM_NUMBER"].isel(N_PROF=[0])
        )
    # Vectorized (pointwise) indexing: xarray composes it from outer reads.
    idx = xr.DataArray([0, 0], dims="p")
    lev = xr.DataArray([1, 3], dims="p")
    xr.testing.assert_identical(
        ref["TEMP"].isel(N_PROF=idx, N_LEVELS=lev), temp.isel(N_PROF=idx, N_LEVELS=lev).load()
    )


def test_variables_and_drop_variables(argo_files: list[Path], argo_store: Path) -> None:
    f = argo_files[0]
    ref = xr.open_dataset(f, engine="netcdf4")
    only = xr.open_dataset(argo_store, engine="atlas", group=_name(f), variables=["TEMP", "PRES"])
    assert set(only.variables) == {"TEMP", "PRES"}
    xr.testing.assert_identical(ref[["TEMP", "PRES"]], only[["TEMP", "PRES"]])
    dropped = xr.open_dataset(
        argo_store, engine="atlas", group=_name(f), drop_variables=["TEMP", "JULD"]
    )
    assert "TEMP" not in dropped and "JULD" not in dropped
    xr.testing.assert_identical(ref.drop_vars(["TEMP", "JULD"]), dropped)


def test_opened_dataset_pickles_and_dask_chunks(argo_files: list[Path], argo_store: Path) -> None:
    f = argo_files[0]
    lazy = xr.open_dataset(argo_store, engine="atlas", group=_name(f))
    back = pickle.loads(pickle.dumps(lazy))
    xr.testing.assert_identical(xr.open_dataset(f, engine="netcdf4"), back)
    chunked = xr.open_dataset(argo_store, engine="atlas", group=_name(f), chunks={})
    assert chunked["TEMP"].chunks is not None
    xr.testing.assert_identical(xr.open_dataset(f, engine="netcdf4"), chunked.compute())


def test_guess_and_errors(argo_store: Path, tmp_path: Path) -> None:
    e = AtlasBackendEntrypoint()
    assert e.guess_can_open(argo_store)
    assert e.guess_can_open(str(argo_store))
    assert not e.guess_can_open(tmp_path)
    assert not e.guess_can_open(tmp_path / "missing")
    assert not e.guess_can_open(12)
    with pytest.raises(ValueError, match="group="):
        xr.open_dataset(argo_store, engine="atlas")
    with pytest.raises(KeyError):
        xr.open_dataset(argo_store, engine="atlas", group="no_such_profile")


def test_native_dataset_through_engine(store_path: Path) -> None:
    """A dataset written through the API (not imported from NetCDF)."""
    with atlas.Store.create(store_path) as s:
        ds = s.create_dataset("d")
        ds.define_array("t", "f4", ["time"], [3], fill_value=np.nan)
        ds.write("t", [1.0, 2.0, 3.0])
        ds.set_array_attr("t", "units", "K")
        ds.define_array("label", str, ["time"], [3])
        ds.write("label", np.array(["a", "bb", "ccc"], dtype=object))
        ds.set_attr("title", "demo")
    got = xr.open_dataset(store_path, engine="atlas")  # the only dataset
    assert got.attrs == {"title": "demo"}
    np.testing.assert_array_equal(got["t"].values, np.array([1, 2, 3], dtype="f4"))
    assert got["t"].attrs == {"units": "K"}
    assert got["label"].values.tolist() == ["a", "bb", "ccc"]


def test_path_opens_reuse_the_handle_until_a_commit(store_path: Path) -> None:
    from atlas import xarray_backend

    with atlas.Store.create(store_path) as s:
        ds = s.create_dataset("d")
        ds.define_array("v", "i4", ["n"], [2])
        ds.write("v", [1, 2])
    first = xr.open_dataset(store_path, engine="atlas", group="d")
    handle = xarray_backend._path_cache[str(store_path.resolve())][1]
    xr.open_dataset(store_path, engine="atlas", group="d")
    assert xarray_backend._path_cache[str(store_path.resolve())][1] is handle
    with atlas.Store.open(store_path, mode="a") as w:
        w["d"].write("v", [7, 8])
    again = xr.open_dataset(store_path, engine="atlas", group="d")
    assert again["v"].values.tolist() == [7, 8], "a commit must be seen by the next open"
    assert xarray_backend._path_cache[str(store_path.resolve())][1] is not handle
    assert first["v"].values.tolist() == [1, 2], "an open dataset keeps its snapshot"


def test_character_axis_selections(argo_files: list[Path], argo_store: Path) -> None:
    """Selections along the character axis of a raw ``char`` variable (read whole, then indexed)."""
    f = argo_files[0]
    ref = xr.open_dataset(f, engine="netcdf4", concat_characters=False).load()
    lazy = xr.open_dataset(argo_store, engine="atlas", group=_name(f), concat_characters=False)
    for v in ("PLATFORM_NUMBER", "DATA_MODE", "TEMP_QC"):
        char_dim = ref[v].dims[-1]
        n = ref.sizes[char_dim]
        for sel in (slice(1, 3), slice(None, None, -1), [n - 1, 0], 0, n - 1, slice(0, 1)):
            xr.testing.assert_identical(
                ref[v].isel({char_dim: sel}), lazy[v].isel({char_dim: sel}).load()
            )
