"""The core API: stores, datasets, arrays of every dtype, attributes, stats."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

import atlas

NUMERIC = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
]


def _sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(7)
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    d = np.dtype(dtype)
    if d.kind in "iu":
        info = np.iinfo(d)
        # The extremes are in the data, the rest random.
        a = rng.integers(info.min, info.max, size=shape, dtype=d, endpoint=True)
        a.flat[0] = info.min
        a.flat[-1] = info.max
        return a
    a = rng.standard_normal(shape).astype(d) * 1e3
    a.flat[1] = np.nan
    a.flat[2] = np.inf
    return a


@pytest.mark.parametrize("dtype", NUMERIC)
def test_numeric_round_trip_every_dtype(store_path: Path, dtype: str) -> None:
    data = _sample(dtype, (6, 5))
    with atlas.Store.create(store_path) as s:
        ds = s.create_dataset("d")
        ds.define_array("v", dtype, ["y", "x"], [6, 5], chunks=[4, 2])
        ds.write("v", data)
        got = ds.read("v")
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, data)
    # After reopening, from disk.
    r = atlas.Store.open(store_path)
    got = r["d"].read("v")
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, data)
    # A hyperslab crossing chunk borders.
    np.testing.assert_array_equal(r["d"].read("v", [1, 1], [4, 3]), data[1:5, 1:4])
    assert r["d"].array_info("v") == {
        "dtype": dtype,
        "dims": ("y", "x"),
        "shape": (6, 5),
        "chunks": (4, 2),
        "fill_value": None,
    }


def test_partial_writes_and_fill_value(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    ds = s.create_dataset("d")
    ds.define_array("t", np.float32, ["n"], [10], chunks=[4], fill_value=-999.0)
    ds.write("t", [1.5, 2.5], start=[3])
    got = ds.read("t")
    expect = np.full(10, -999.0, dtype=np.float32)
    expect[3:5] = [1.5, 2.5]
    np.testing.assert_array_equal(got, expect)
    assert ds.array_info("t")["fill_value"] == np.float32(-999.0)
    # start only: to the end.
    np.testing.assert_array_equal(ds.read("t", start=[8]), expect[8:])
    st = ds.stats("t")
    assert st == {"min": 1.5, "max": 2.5, "null_count": 8, "row_count": 10}


def test_strings_and_timestamps(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    ds = s.create_dataset("d")
    ds.define_array("name", str, ["n"], [3], fill_value="?")
    ds.write("name", np.array(["a", "ünï", ""], dtype=object))
    got = ds.read("name")
    assert got.dtype == object
    assert got.tolist() == ["a", "ünï", ""]
    ds.define_array("when", "datetime64[ns]", ["n"], [2])
    times = np.array(["2024-01-01T00:00:00.000000001", "1950-06-30"], dtype="datetime64[ns]")
    ds.write("when", times)
    got_t = ds.read("when")
    assert got_t.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(got_t, times)
    # Other datetime units convert to nanoseconds.
    ds.write("when", np.array(["2000-01-01"], dtype="datetime64[D]"), start=[1])
    assert ds.read("when")[1] == np.datetime64("2000-01-01", "ns")


def test_scalar_array(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    ds = s.create_dataset("d")
    ds.define_array("x", "f8", [], [])
    ds.write("x", np.float64(4.25))
    got = ds.read("x")
    assert got.shape == ()
    assert got[()] == 4.25


def test_write_conversions_are_checked(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    ds = s.create_dataset("d")
    ds.define_array("i", "int16", ["n"], [3])
    ds.write("i", [1, 2, 3])  # Python ints: converted, they fit
    np.testing.assert_array_equal(ds.read("i"), [1, 2, 3])
    with pytest.raises(atlas.InvalidInputError, match="do not fit"):
        ds.write("i", [1, 2, 70000])
    with pytest.raises(atlas.InvalidInputError, match="cannot write float64"):
        ds.write("i", [1.5, 2.0, 3.0])
    with pytest.raises(atlas.InvalidInputError):
        ds.write("i", [1, 2, 3, 4])  # out of bounds
    with pytest.raises(ValueError):
        ds.define_array("bad", "complex64", ["n"], [3])


ATTRS: dict[str, object] = {
    "b": True,
    "i": -5,
    "big": 2**63 + 1,
    "f": 0.25,
    "nan": float("nan"),
    "s": "Ocean ≈ salty\x00",
    "ints": [1, 2, 3],
    "floats": [1.0, 2.5],
    "strs": ["a", "b"],
    "bools": [True, False],
    "empty": [],
}


def test_attributes_round_trip(store_path: Path) -> None:
    with atlas.Store.create(store_path) as s:
        ds = s.create_dataset("d")
        for k, v in ATTRS.items():
            ds.set_attr(k, v)
        ds.set_attr("np32", np.float32(0.5))
        ds.set_attr("npint", np.int16(7))
        ds.set_attr("when", dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc))
        ds.set_attr("whens", np.array(["2001-01-01", "2002-01-01"], dtype="datetime64[s]"))
        ds.define_array("v", "f4", ["n"], [1])
        ds.set_array_attr("v", "units", "degree_Celsius")
        ds.set_array_attr("v", "valid_range", [-2.5, 40.0])
    ds = atlas.Store.open(store_path)["d"]
    got = ds.attrs
    for k, v in ATTRS.items():
        if k == "nan":
            assert np.isnan(got[k])
        else:
            assert got[k] == v and type(got[k]) is type(v), k
    assert list(got)[: len(ATTRS)] == list(ATTRS)  # insertion order kept
    assert got["np32"] == 0.5 and isinstance(got["np32"], float)
    assert got["npint"] == 7 and isinstance(got["npint"], int)
    assert got["when"] == np.datetime64("2024-05-06T07:08:09", "ns")
    assert got["whens"] == [np.datetime64("2001-01-01", "ns"), np.datetime64("2002-01-01", "ns")]
    assert ds.get_attr("missing", 42) == 42
    assert ds.array_attrs("v") == {"units": "degree_Celsius", "valid_range": [-2.5, 40.0]}


def test_attribute_delete_and_bad_values(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    ds = s.create_dataset("d")
    ds.set_attr("a", 1)
    ds.delete_attr("a")
    assert "a" not in ds.attrs
    with pytest.raises(KeyError):
        ds.delete_attr("a")
    with pytest.raises(atlas.InvalidInputError):
        ds.set_attr("x", {"a": 1})
    with pytest.raises(atlas.InvalidInputError):
        ds.set_attr("x", [1, "a"])
    ds.define_array("v", "f4", ["n"], [1])
    ds.set_array_attr("v", "k", "x")
    ds.delete_array_attr("v", "k")
    assert ds.array_attrs("v") == {}
    with pytest.raises(atlas.ArrayNotFoundError):
        ds.set_array_attr("nope", "k", 1)


def test_datasets_list_glob_contains_len_delete(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    for n in ["D1_001", "D1_002", "R1_001", "x"]:
        s.create_dataset(n)
    assert len(s) == 4
    assert "D1_002" in s and "nope" not in s
    assert s.list() == ["D1_001", "D1_002", "R1_001", "x"]
    assert list(s) == s.list()
    assert s.list("D1_*") == ["D1_001", "D1_002"]
    assert s.list("?1_001") == ["D1_001", "R1_001"]
    assert s.list("*") == s.list()
    assert s.list("nomatch*") == []
    s.delete_dataset("x")
    assert "x" not in s and len(s) == 3
    ds = s["D1_001"]
    ds.define_array("a", "i4", ["n"], [2])
    assert ds.arrays() == ["a"] and "a" in ds
    ds.delete_array("a")
    assert ds.arrays() == []
    s.flush()
    assert atlas.Store.open(store_path).list() == ["D1_001", "D1_002", "R1_001"]


def test_with_flushes_only_on_normal_exit(store_path: Path) -> None:
    with atlas.Store.create(store_path) as s:
        s.create_dataset("kept")
    gen = atlas.Store.open(store_path).generation

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atlas.Store.open(store_path, mode="a") as s:
            s.create_dataset("lost")
            raise Boom
    assert s.closed
    r = atlas.Store.open(store_path)
    assert r.generation == gen, "a with block that raised must not commit"
    assert r.list() == ["kept"]
    with atlas.Store.open(store_path, mode="a") as s:
        s.create_dataset("second")
    r = atlas.Store.open(store_path)
    assert r.generation > gen
    assert r.list() == ["kept", "second"]


def test_read_only_handle_refuses_writes(store_path: Path) -> None:
    atlas.Store.create(store_path).flush()
    r = atlas.Store.open(store_path)
    assert r.mode == "r"
    with pytest.raises(atlas.ReadOnlyError, match='mode="a"'):
        r.create_dataset("x")
    r.flush()  # nothing to commit: allowed
    with pytest.raises(ValueError, match="mode"):
        atlas.Store.open(store_path, mode="w")  # type: ignore[arg-type]


def test_second_writer_is_locked(store_path: Path) -> None:
    w = atlas.Store.create(store_path)
    w.flush()
    with pytest.raises(atlas.LockedError) as e:
        atlas.Store.open(store_path, mode="a")
    assert e.value.kind == "conflict"
    w.close()


def test_compact_keeps_data(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    ds = s.create_dataset("d")
    ds.define_array("v", "i4", ["n"], [4], chunks=[2])
    for i in range(4):
        ds.write("v", [i], start=[i])
        s.flush()
    s.compact()
    np.testing.assert_array_equal(atlas.Store.open(store_path)["d"].read("v"), [0, 1, 2, 3])


def test_closed_store(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    s.close()
    assert s.closed
    with pytest.raises(ValueError, match="closed"):
        s.list()


def test_gil_is_released_during_reads(store_path: Path) -> None:
    import threading
    import time

    s = atlas.Store.create(store_path)
    ds = s.create_dataset("d")
    n = 8_000_000
    ds.define_array("v", "f8", ["n"], [n], chunks=[n // 8])
    ds.write("v", np.arange(n, dtype="f8"))
    s.flush()
    r = atlas.Store.open(store_path)["d"]
    stamps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    t = threading.Thread(target=tick)
    t.start()
    try:
        time.sleep(0.05)
        t0 = time.perf_counter()
        r.read("v")  # one call: if it held the GIL, the ticker would stall throughout
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    inside = [x for x in stamps if t0 <= x <= t1]
    gaps = np.diff([t0, *inside, t1])
    assert t1 - t0 > 0.005, "the read is too short to tell"
    assert len(inside) > 10, f"the other thread ran {len(inside)} times during a {t1 - t0:.3f} s read"
    assert gaps.max() < (t1 - t0) / 2, f"the other thread stalled {gaps.max():.3f} s of {t1 - t0:.3f} s"


def _batch(n: int) -> list[atlas.DatasetSpec]:
    """``n`` datasets with arrays of every kind: numbers of every dtype,
    strings, times, an array without data (fill values), chunks and a fill
    value, attributes on datasets and arrays."""
    out: list[atlas.DatasetSpec] = []
    for i in range(n):
        arrays: dict[str, atlas.ArraySpec] = {
            f"v_{d}": {"dims": ["x", "y"], "data": _sample(d, (3, 4)) if i % 2 else _sample(d, (3, 4))[::-1]}
            for d in NUMERIC
        }
        arrays["name"] = {"dims": ["x"], "data": np.array([f"s{i}", "", "é"], dtype=object)}
        arrays["time"] = {
            "dims": ["t"],
            "data": np.array(["2020-01-01T00:00:00", "1969-12-31T23:59:59"], dtype="datetime64[ns]"),
        }
        arrays["empty"] = {
            "dims": ["z"],
            "dtype": "float64",
            "shape": [5],
            "chunks": [2],
            "fill_value": -1.5,
            "attrs": {"units": "m", "scale": [1.0, 2.0]},
        }
        arrays["TEMP"] = {
            "dims": ["N_LEVELS"],
            "data": np.arange(i, i + 50, dtype=np.float32),
            "attrs": {"units": "degC"},
        }
        out.append({"name": f"p{i:03}", "attrs": {"cycle": i, "lat": i * 0.5}, "arrays": arrays})
    return out


def _same_as_spec(ds: atlas.Dataset, spec: atlas.DatasetSpec) -> None:
    assert ds.attrs == spec.get("attrs", {})
    arrays = spec.get("arrays", {})
    assert ds.arrays() == list(arrays)
    for name, a in arrays.items():
        got = ds.read(name)
        if "data" in a:
            np.testing.assert_array_equal(got, np.asarray(a["data"]))
        else:
            np.testing.assert_array_equal(got, np.full(a["shape"], a.get("fill_value", 0)))
        assert ds.array_attrs(name) == a.get("attrs", {})


def test_create_datasets_equals_one_call_per_dataset(store_path: Path) -> None:
    specs = _batch(12)
    store = atlas.Store.create(store_path)
    assert store.create_datasets(specs) == 12
    # The same datasets one call at a time, in a second store.
    other = atlas.Store.create(store_path.with_name("other"))
    for spec in specs:
        ds = other.create_dataset(spec["name"])
        for k, v in spec.get("attrs", {}).items():
            ds.set_attr(k, v)
        for name, a in spec.get("arrays", {}).items():
            data = a.get("data")
            shape = a.get("shape", list(np.shape(data)))
            dtype = a.get("dtype", str if np.asarray(data).dtype.kind in "OU" else np.asarray(data).dtype)
            ds.define_array(name, dtype, a["dims"], shape, a.get("chunks"), a.get("fill_value"))
            if data is not None:
                ds.write(name, data)
            for k, v in a.get("attrs", {}).items():
                ds.set_array_attr(name, k, v)
    for s in (store, other):
        assert s.list() == [spec["name"] for spec in specs]
        for spec in specs:
            _same_as_spec(s[spec["name"]], spec)
            for name in spec.get("arrays", {}):
                assert s[spec["name"]].array_info(name) == other[spec["name"]].array_info(name)
        s.flush()
        s.close()
    reopened = atlas.Store.open(store_path)
    for spec in specs:
        _same_as_spec(reopened[spec["name"]], spec)


def test_create_datasets_is_all_or_nothing(store_path: Path) -> None:
    store = atlas.Store.create(store_path)
    store.create_datasets(_batch(2))
    store.flush()
    generation = store.generation
    good = _batch(5)[2:]
    bad_shape: atlas.DatasetSpec = {
        "name": "x1",
        "arrays": {"a": {"dims": ["n"], "shape": [3], "data": np.zeros(4, dtype=np.float32)}},
    }
    cases: list[tuple[list[atlas.DatasetSpec], type[Exception], str]] = [
        (good + [{"name": "p000"}], atlas.AlreadyExistsError, "p000"),
        (good + [{"name": "p004"}], atlas.AlreadyExistsError, "p004"),  # repeated
        (good + [bad_shape], atlas.InvalidInputError, "shape"),
        (good + [{"name": "x2", "arays": {}}], atlas.InvalidInputError, "arays"),  # type: ignore[typeddict-unknown-key]
        (good + [{"name": "x3", "arrays": {"a": {"data": [1.0]}}}], atlas.InvalidInputError, "dims"),  # type: ignore[typeddict-item]
        (good + [{"name": "x4", "arrays": {"a": {"dims": ["n"]}}}], atlas.InvalidInputError, "data"),
        (good + [{"name": "x5", "arrays": {"a": {"dims": ["n"], "data": np.zeros(2, np.float16)}}}], atlas.InvalidInputError, "float16"),
        (good + [{"name": "bad/name"}], atlas.InvalidInputError, "bad/name"),
    ]
    for specs, error, match in cases:
        with pytest.raises(error, match=match):
            store.create_datasets(specs)
        assert store.list() == ["p000", "p001"], match
    store.flush()
    assert store.generation == generation, "nothing was pending"
    store.close()
    with pytest.raises(atlas.ReadOnlyError):
        atlas.Store.open(store_path).create_datasets(good)
