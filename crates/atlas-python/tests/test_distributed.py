"""dask.distributed with worker processes, and process pools: stacked lazy
datasets travel as recipes (path, generation) and give the threaded result;
handles inherited through fork() raise instead of hanging."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

import atlas


def _reduce(ds: xr.Dataset) -> xr.Dataset:
    return xr.Dataset(
        {
            "temp_mean": ds["TEMP"].mean(("N_PROF", "N_LEVELS")),
            "psal_max": ds["PSAL"].max(),
            "n_temp": ds["TEMP"].count(),
        }
    )


def _worker_state() -> tuple[int, list[str]]:
    from atlas import _pickle

    return os.getpid(), sorted(_pickle._cache)


def test_distributed_processes_reduction_equals_threaded(
    argo_files: list[Path], argo_store: Path
) -> None:
    names = [f.stem for f in argo_files]
    stacked = atlas.open_stacked(argo_store, ["TEMP", "PSAL"], names, chunks=3)
    expected = _reduce(stacked).compute(scheduler="threads")
    assert int(expected["n_temp"]) > 0
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # A free port: `None` still tries the default 8787 and warns
            # (an error under this suite's warning filter) when something
            # else holds it.
            dashboard_address=":0",
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        got = client.compute(_reduce(stacked)).result()
        states = client.run(_worker_state)
    xr.testing.assert_identical(expected, got)
    # The work ran in two other processes, each of which reopened the store
    # read-only from the pickled recipe.
    assert len(states) == 2
    for pid, cached in states.values():
        assert pid != os.getpid()
        assert cached == [str(Path(argo_store).resolve())]


# Module level so that a fork()ed pool worker inherits it.
_INHERITED: dict[str, Any] = {}


def _sum_inherited(_: int) -> str:
    try:
        return str(float(_INHERITED["temp"].sum()))
    except atlas.ForkedHandleError as e:
        return f"ForkedHandleError: {e}"


def _sum_pickled(blob: bytes) -> float:
    return float(pickle.loads(blob).sum())


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # Python >= 3.12 warns on fork with threads
def test_fork_pool_raises_and_spawn_pool_reads(argo_files: list[Path], argo_store: Path) -> None:
    names = [f.stem for f in argo_files]
    store = atlas.Store.open(argo_store)
    temp = atlas.open_stacked(store, "TEMP", names)["TEMP"]
    expected = float(temp.sum())  # the runtime has threads before the fork
    _INHERITED["temp"] = atlas.open_stacked(store, "TEMP", names)["TEMP"]  # still lazy
    try:
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map_async(_sum_inherited, range(2)).get(timeout=60)
    finally:
        _INHERITED.clear()
    for r in results:
        assert r.startswith("ForkedHandleError") and "open the store again" in r, r
    blob = pickle.dumps(atlas.open_stacked(store, "TEMP", names)["TEMP"])
    with mp.get_context("spawn").Pool(2) as pool:
        sums = pool.map_async(_sum_pickled, [blob, blob]).get(timeout=120)
    np.testing.assert_allclose(sums, [expected, expected], rtol=1e-6)
