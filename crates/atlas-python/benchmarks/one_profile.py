"""One Argo profile through the "atlas" engine against the netcdf4 engine.

Usage: python one_profile.py STORE NC_FILE... (STORE made by `atlas import STORE NC_FILE...`).
Prints the median wall and CPU milliseconds per profile of each way, over every
file given, each repeated REPEAT times (after one warm-up pass).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import xarray as xr

import atlas

REPEAT = 5


def measure(label: str, files: list[Path], fn: Callable[[Path], object]) -> None:
    for f in files:  # warm-up: page cache, imports, engine discovery
        fn(f)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(REPEAT):
        w0, c0 = time.perf_counter(), time.process_time()
        for f in files:
            fn(f)
        walls.append((time.perf_counter() - w0) / len(files) * 1e3)
        cpus.append((time.process_time() - c0) / len(files) * 1e3)
    print(f"{label:58s} {statistics.median(walls):7.2f} ms wall {statistics.median(cpus):7.2f} ms CPU")


def main() -> None:
    store_path = Path(sys.argv[1])
    files = [Path(a) for a in sys.argv[2:]]
    store = atlas.Store.open(store_path)
    print(f"{len(files)} profiles, {len(store)} datasets in the store, median of {REPEAT} passes")
    measure(
        "netcdf4 engine: open_dataset(f).TEMP.values",
        files,
        lambda f: xr.open_dataset(f, engine="netcdf4").TEMP.values,
    )
    measure(
        "atlas engine, store path: open_dataset(path, group).TEMP.values",
        files,
        lambda f: xr.open_dataset(store_path, engine="atlas", group=f.stem).TEMP.values,
    )
    measure(
        "atlas engine, open Store: open_dataset(store, group).TEMP.values",
        files,
        lambda f: xr.open_dataset(store, engine="atlas", group=f.stem).TEMP.values,  # type: ignore[arg-type]
    )
    # Without CF decoding: what is left when xarray's decoding, which both
    # engines pay, is taken out.
    measure(
        "netcdf4 engine, decode_cf=False: .TEMP.values",
        files,
        lambda f: xr.open_dataset(f, engine="netcdf4", decode_cf=False).TEMP.values,
    )
    measure(
        "atlas engine, decode_cf=False: .TEMP.values",
        files,
        lambda f: xr.open_dataset(
            store,  # type: ignore[arg-type]
            engine="atlas",
            group=f.stem,
            decode_cf=False,
        ).TEMP.values,
    )
    measure(
        "netcdf4 engine: open_dataset(f).load() (all variables)",
        files,
        lambda f: xr.open_dataset(f, engine="netcdf4").load(),
    )
    measure(
        "atlas engine, open Store: .load() (all variables)",
        files,
        lambda f: xr.open_dataset(store, engine="atlas", group=f.stem).load(),  # type: ignore[arg-type]
    )
    measure(
        "atlas engine, variables=['TEMP']",
        files,
        lambda f: xr.open_dataset(
            store,  # type: ignore[arg-type]
            engine="atlas",
            group=f.stem,
            variables=["TEMP"],
        ).TEMP.values,
    )
    measure("Store.open(path)", files[:5], lambda f: atlas.Store.open(store_path))
    measure("store[name].read('TEMP')", files, lambda f: store[f.stem].read("TEMP"))


if __name__ == "__main__":
    main()
