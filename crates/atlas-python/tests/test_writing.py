"""Writes from xarray (atlas.to_atlas, atlas.write_many): round trips through
the engine with xr.testing.assert_identical, by example, on real Argo
profiles, and by hypothesis property tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atlas


def _example() -> xr.Dataset:
    ds = xr.Dataset(
        {
            "t": (("time", "x"), np.arange(6, dtype="f4").reshape(3, 2), {"units": "K"}),
            "flag": ("time", np.array([True, False, True])),
            "name": ("x", np.array(["é", "bb"], dtype=object)),
            "code": ("x", np.array([b"ab", b"c"], dtype="S2")),
            "n": ((), np.int8(4)),
        },
        coords={"time": pd.date_range("2020-01-01", periods=3), "lat": ("x", [1.5, 2.5])},
        attrs={"title": "t€st", "version": np.int16(3), "empty": [], "nan": np.nan},
    )
    ds["t"].encoding = {"dtype": "int16", "scale_factor": np.float32(0.5), "_FillValue": -999}
    return ds


def test_to_atlas_round_trips_with_encodings(store_path: Path) -> None:
    ds = _example()
    atlas.to_atlas(ds, store_path, "a")
    back = xr.open_dataset(store_path, engine="atlas", group="a")
    xr.testing.assert_identical(ds, back)
    # The encoding went through xarray's encoder: packed int16, float32 scale.
    raw = xr.open_dataset(store_path, engine="atlas", group="a", decode_cf=False)
    assert raw["t"].dtype == np.int16
    assert raw["t"].attrs["scale_factor"] == np.float32(0.5)
    assert type(raw["t"].attrs["scale_factor"]) is np.float32
    assert back["t"].dtype == np.float32, "a float32 scale_factor decodes to float32"
    assert raw["time"].attrs["units"].startswith("days since")
    assert back["code"].dtype == np.dtype("S2")
    assert atlas.Store.open(store_path)["a"].array_attrs("code")["_nc_char_dim"] == "string2"


def test_round_trip_check_can_fail(store_path: Path) -> None:
    ds = _example()
    atlas.to_atlas(ds, store_path, "a")
    changed = ds.assign_attrs(title="other")
    with pytest.raises(AssertionError):
        xr.testing.assert_identical(changed, xr.open_dataset(store_path, engine="atlas", group="a"))


def test_write_many_commits_once(store_path: Path) -> None:
    atlas.Store.create(store_path).close()
    store = atlas.Store.open(store_path, mode="a")
    before = store.generation
    items = [(f"d{i}", _example().assign_attrs(i=i)) for i in range(3)]
    assert atlas.write_many(store, items) == ["d0", "d1", "d2"]
    assert store.generation == before + 1, "one flush for the whole batch"
    store.close()
    for i in range(3):
        xr.testing.assert_identical(
            items[i][1], xr.open_dataset(store_path, engine="atlas", group=f"d{i}")
        )


@pytest.mark.parametrize("batch_bytes", [1, 32 << 20])
def test_write_many_batches_and_repeated_names(
    store_path: Path, monkeypatch: pytest.MonkeyPatch, batch_bytes: int
) -> None:
    """Through one create_datasets call or one per dataset, the datasets read
    back the same; a name given twice is refused with "w-" and the second
    replaces the first with "w", as one write at a time would."""
    import atlas.writing

    monkeypatch.setattr(atlas.writing, "_BATCH_BYTES", batch_bytes)
    items = [(f"d{i}", _example().assign_attrs(i=i)) for i in range(4)]
    again = _example().assign_attrs(i=99)
    with pytest.raises(atlas.AlreadyExistsError):
        atlas.write_many(store_path, [*items, ("d1", again)])
    assert atlas.Store.open(store_path).list() == [], "nothing committed"
    names = atlas.write_many(store_path, [*items, ("d1", again)], mode="w")
    assert names == ["d0", "d1", "d2", "d3", "d1"]
    assert atlas.Store.open(store_path).list() == ["d0", "d2", "d3", "d1"]
    for name, want in [*items[:1], *items[2:], ("d1", again)]:
        xr.testing.assert_identical(
            want, xr.open_dataset(store_path, engine="atlas", group=name)
        )


def test_modes_and_refusals(store_path: Path) -> None:
    ds = _example()
    atlas.to_atlas(ds, store_path, "a")
    with pytest.raises(atlas.AlreadyExistsError):
        atlas.to_atlas(ds, store_path, "a")
    atlas.to_atlas(ds.assign_attrs(title="second"), store_path, "a", mode="w")
    assert xr.open_dataset(store_path, engine="atlas", group="a").attrs["title"] == "second"
    with pytest.raises(atlas.InvalidInputError, match="_nc_"):
        atlas.to_atlas(ds.assign_attrs(_nc_dims=["x"]), store_path, "b")
    with pytest.raises(atlas.InvalidInputError, match="mode"):
        atlas.to_atlas(ds, store_path, "c", mode="a")  # type: ignore[arg-type]
    with pytest.raises(atlas.InvalidInputError, match="read-only"):
        atlas.to_atlas(ds, atlas.Store.open(store_path), "d")


def test_failed_batch_commits_nothing(store_path: Path) -> None:
    atlas.to_atlas(_example(), store_path, "a")
    generation = atlas.Store.open(store_path).generation
    bad = xr.Dataset({"h": ("x", np.zeros(2, dtype=np.float16))})  # no float16 in ATLAS
    with pytest.raises(atlas.InvalidInputError):
        atlas.write_many(store_path, [("b", _example()), ("c", bad)])
    after = atlas.Store.open(store_path)
    assert after.generation == generation
    assert after.list() == ["a"]


def test_real_argo_profiles_round_trip(argo_files: list[Path], tmp_path: Path) -> None:
    """Argo profiles read by the netCDF4 engine, written with to_atlas, read
    back by the atlas engine: identical (char arrays, fill values, times,
    float32 attributes). The raw form equals the file's too, except for time
    variables, whose units xarray's encoder rewrites
    ("days since 1950-01-01T00:00:00+00:00", calendar "proleptic_gregorian"),
    as ``to_netcdf`` does."""
    store = tmp_path / "s"
    refs = {f.stem: xr.open_dataset(f, engine="netcdf4") for f in argo_files}
    atlas.write_many(store, refs.items())
    for name, ref in refs.items():
        xr.testing.assert_identical(ref, xr.open_dataset(store, engine="atlas", group=name))
        raw_ref = xr.open_dataset(ref.encoding["source"], engine="netcdf4", decode_cf=False)
        times = [v for v in raw_ref.variables if " since " in str(raw_ref[v].attrs.get("units"))]
        assert times, "the check must cover time variables"
        raw = xr.open_dataset(store, engine="atlas", group=name, decode_cf=False)
        xr.testing.assert_identical(raw_ref.drop_vars(times), raw.drop_vars(times))
        for v in times:
            np.testing.assert_array_equal(raw_ref[v].values, raw[v].values)


# --- property tests ---------------------------------------------------------

NUMERIC = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]
DTYPES = ["bool", *NUMERIC, "str", "datetime64[ns]"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
NAMES = st.text("abcxyzéü_", min_size=1, max_size=4).filter(
    lambda s: not s.startswith("_") and s not in ("x", "y")
)


def _elements(dtype: str) -> st.SearchStrategy[Any]:
    if dtype == "str":
        return TEXT
    if dtype == "datetime64[ns]":
        # Whole seconds, as an int64 "seconds since" encoding keeps them exactly.
        return st.integers(-(2**31), 2**31).map(lambda s: np.datetime64(s, "s"))
    if dtype.startswith("float"):
        return st.floats(width=int(dtype[5:]), allow_nan=True, allow_infinity=True)
    return hnp.from_dtype(np.dtype(dtype))


@st.composite
def _arrays(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    if dtype == "str":
        cells = draw(st.lists(TEXT, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        out = np.empty(len(cells), dtype=object)
        out[:] = cells
        return out.reshape(shape)
    if dtype == "datetime64[ns]":
        ints = draw(hnp.arrays(np.int64, shape, elements=st.integers(-(2**31), 2**31)))
        return ints.astype("datetime64[s]").astype("datetime64[ns]")
    return draw(hnp.arrays(np.dtype(dtype), shape, elements=_elements(dtype)))


@st.composite
def _attr_values(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["scalar", "array", "empty", "text", "texts", "nan", "py"]))
    if kind == "scalar":
        dtype = draw(st.sampled_from(NUMERIC))
        return np.dtype(dtype).type(draw(_elements(dtype)))
    if kind == "array":
        dtype = draw(st.sampled_from(NUMERIC))
        return draw(hnp.arrays(np.dtype(dtype), st.integers(2, 4), elements=_elements(dtype)))
    if kind == "empty":
        return []
    if kind == "text":
        return draw(TEXT)
    if kind == "texts":
        return draw(st.lists(TEXT, min_size=2, max_size=3))
    if kind == "nan":
        return draw(st.sampled_from([np.nan, np.float32(np.nan), np.array([1.5, np.nan])]))
    return draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans()))


@st.composite
def datasets(draw: st.DrawFn) -> xr.Dataset:
    sizes = {d: draw(st.integers(0, 3)) for d in ("x", "y")}
    variables: dict[str, Any] = {}
    for name in draw(st.lists(NAMES, min_size=1, max_size=4, unique=True)):
        dims = tuple(draw(st.sampled_from([(), ("x",), ("y",), ("x", "y")])))
        shape = tuple(sizes[d] for d in dims)
        attrs = draw(st.dictionaries(NAMES, _attr_values(), max_size=3))
        variables[name] = (dims, draw(_arrays(shape)), attrs)
    attrs = draw(st.dictionaries(NAMES, _attr_values(), max_size=4))
    return xr.Dataset(variables, attrs=attrs)


@settings(
    # ATLAS_HYPOTHESIS_EXAMPLES=1000 for a deeper run by hand.
    max_examples=int(os.environ.get("ATLAS_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ds=datasets())
def test_property_round_trip(ds: xr.Dataset) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s"
        atlas.to_atlas(ds, store, "d")
        back = xr.open_dataset(store, engine="atlas", group="d").load()
        xr.testing.assert_identical(ds, back)
        for k, v in ds.variables.items():
            if v.dtype.kind in "biuf":
                assert back[k].dtype == v.dtype, k
