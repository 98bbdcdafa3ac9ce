"""Handles across processes: pickling recipes and the fork() rule."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import atlas


def _make(store_path: Path) -> None:
    with atlas.Store.create(store_path) as s:
        ds = s.create_dataset("d")
        ds.define_array("v", "i4", ["n"], [3])
        ds.write("v", [1, 2, 3])


def test_read_only_store_pickles_as_a_recipe(store_path: Path) -> None:
    _make(store_path)
    r = atlas.Store.open(store_path)
    blob = pickle.dumps(r)
    assert len(blob) < 300, "a recipe, not state"
    assert str(store_path).encode() in blob
    back = pickle.loads(blob)
    assert back.mode == "r"
    assert back.generation == r.generation
    assert back.path == r.path
    np.testing.assert_array_equal(back["d"].read("v"), [1, 2, 3])
    # One open per process and path: the second unpickle reuses the handle.
    assert pickle.loads(blob) is back


def test_dataset_pickles_through_its_store(store_path: Path) -> None:
    _make(store_path)
    ds = atlas.Store.open(store_path)["d"]
    back = pickle.loads(pickle.dumps(ds))
    assert back.name == "d"
    np.testing.assert_array_equal(back.read("v"), [1, 2, 3])


def test_writable_store_refuses_to_pickle(store_path: Path) -> None:
    s = atlas.Store.create(store_path)
    with pytest.raises(TypeError, match=r'read-only.*mode="r"'):
        pickle.dumps(s)
    ds = s.create_dataset("d")
    with pytest.raises(TypeError, match="writable"):
        pickle.dumps(ds)


def test_recipe_of_an_older_generation_is_stale(store_path: Path) -> None:
    _make(store_path)
    blob = pickle.dumps(atlas.Store.open(store_path))
    with atlas.Store.open(store_path, mode="a") as w:
        w.create_dataset("newer")
    # Clear this process's cache so the recipe must reopen.
    from atlas import _pickle

    _pickle._cache.clear()
    with pytest.raises(atlas.StaleHandleError, match="generation") as e:
        pickle.loads(blob)
    assert e.value.kind == "conflict"


def test_open_at_reads_a_retained_past_state(store_path: Path) -> None:
    _make(store_path)
    with atlas.Store.open(store_path, mode="a") as w:
        w.set_retention(10)
    first = atlas.Store.open(store_path).generation
    with atlas.Store.open(store_path, mode="a") as w:
        w["d"].write("v", [7, 8, 9])
    past = atlas.Store.open(store_path, at=first)
    assert past.generation == first and past.mode == "r"
    np.testing.assert_array_equal(past["d"].read("v"), [1, 2, 3])
    np.testing.assert_array_equal(atlas.Store.open(store_path)["d"].read("v"), [7, 8, 9])
    with pytest.raises(atlas.UnsupportedError):
        past["d"].write("v", [0, 0, 0])
    with pytest.raises(ValueError, match="read-only"):
        atlas.Store.open(store_path, mode="a", at=first)
    with pytest.raises(atlas.NotFoundError):
        atlas.Store.open(store_path, at="no-such-tag")
    with pytest.raises(ValueError, match="generation"):
        atlas.Store.open(store_path, at=1.5)  # type: ignore[arg-type]


def test_recipe_of_a_retained_generation_reads_that_generation(store_path: Path) -> None:
    _make(store_path)
    with atlas.Store.open(store_path, mode="a") as w:
        w.set_retention(10)
    blob = pickle.dumps(atlas.Store.open(store_path)["d"])
    with atlas.Store.open(store_path, mode="a") as w:
        w["d"].write("v", [7, 8, 9])
    from atlas import _pickle

    _pickle._cache.clear()
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.read("v"), [1, 2, 3])


def _child_use_inherited(store: atlas.Store, q: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        store.list()
        q.put(("no error", ""))
    except atlas.ForkedHandleError as e:
        q.put((type(e).__name__, str(e)))
    except BaseException as e:  # noqa: BLE001 - report anything else to the parent
        q.put((type(e).__name__, str(e)))


def _child_open_new(path: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        q.put(("ok", atlas.Store.open(path)["d"].read("v").tolist()))
    except BaseException as e:  # noqa: BLE001
        q.put((type(e).__name__, str(e)))


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # Python >= 3.12 warns on fork with threads
def test_inherited_handle_in_forked_child_raises(store_path: Path) -> None:
    _make(store_path)
    r = atlas.Store.open(store_path)
    r["d"].read("v")  # the runtime exists and has threads before the fork
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_use_inherited, args=(r, q))
    p.start()
    p.join(timeout=10)
    assert p.exitcode == 0, "the child hung or crashed"
    name, message = q.get(timeout=1)
    assert name == "ForkedHandleError"
    assert f"process {os.getpid()}" in message and "open the store again" in message
    # A handle opened in the child works (a fresh runtime).
    p = ctx.Process(target=_child_open_new, args=(str(store_path), q))
    p.start()
    p.join(timeout=10)
    assert p.exitcode == 0
    assert q.get(timeout=1) == ("ok", [1, 2, 3])
    # The parent's handle is untouched.
    np.testing.assert_array_equal(r["d"].read("v"), [1, 2, 3])


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # Python >= 3.12 warns on fork with threads
def test_dataset_from_forked_parent_raises(store_path: Path) -> None:
    _make(store_path)
    ds = atlas.Store.open(store_path)["d"]
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only when the right error came
        code = 1
        try:
            ds.read("v")
        except atlas.ForkedHandleError:
            code = 0
        except BaseException:  # noqa: BLE001
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_dask_tokens_follow_the_generation(store_path: Path) -> None:
    import xarray as xr
    from dask.base import tokenize

    _make(store_path)
    a = atlas.Store.open(store_path)
    b = atlas.Store.open(store_path)
    # Tokenized by location and generation, not by pickling.
    assert a.__dask_tokenize__() == ("atlas.Store", a.path, a.generation, 0)
    assert a["d"].__dask_tokenize__() == (a.__dask_tokenize__(), "d")
    assert tokenize(a) == tokenize(b)
    assert tokenize(a["d"]) == tokenize(b["d"]) != tokenize(a)
    with atlas.Store.open(store_path, mode="a") as w:
        # Unflushed changes are part of a writable handle's state: never reused.
        assert tokenize(w) != tokenize(w)
        w["d"].write("v", [4, 5, 6])
    c = atlas.Store.open(store_path)
    assert c.generation > a.generation
    assert tokenize(c) != tokenize(a)
    assert tokenize(c["d"]) != tokenize(a["d"])
    # xarray names its dask tasks from the object it opens: a newer
    # generation gets new task names, so no stale result is reused.
    x1 = xr.open_dataset(a, engine="atlas", group="d", chunks={})
    x2 = xr.open_dataset(c, engine="atlas", group="d", chunks={})
    assert x1.v.data.name != x2.v.data.name
    np.testing.assert_array_equal(x1.v.values, [1, 2, 3])
    np.testing.assert_array_equal(x2.v.values, [4, 5, 6])
