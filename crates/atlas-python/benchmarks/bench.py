"""The Python benchmarks of issue 13, in one run, on the same machine and data.

Usage (from the repository root, after `maturin develop --release`):

    .venv/bin/python crates/atlas-python/benchmarks/bench.py ARGO_DIR STORE \
        [--mf-count 300] [--repeat 3] [--out target/bench-python.json]

ARGO_DIR holds the unpacked Argo profiles (`*.nc`, searched recursively);
STORE is `atlas import STORE ARGO_DIR` of them (made here with the `atlas`
tool in target/release when missing). Figures, each the median of --repeat runs
after one warm-up, wall clock, page cache warm:

1. TEMP of every profile as one array:
   - `atlas.open_stacked(store, "TEMP").TEMP.values` (padded, CF-decoded), from
     an open store, on a fresh handle (empty block cache) and warm;
   - `store.read_across("TEMP", names)` (the padded Rust read alone);
   - the Rust `read_array_across` itself: `atlas scan STORE TEMP` (reports the
     time after opening, cold handle) and that process's whole wall time;
   - a raw netCDF4-python loop (`Dataset(f)["TEMP"][:]` per file);
   - `xr.open_mfdataset` with the padding step every ragged profile needs
     (`preprocess` keeps TEMP and pads N_PROF/N_LEVELS to the largest), on the
     first --mf-count files only and scaled linearly to all (it takes minutes).
2. One profile: `xr.open_dataset(.., engine="atlas").TEMP.values` against the
   netcdf4 engine on the same file (median per profile over 20 profiles).
3. Two Python threads against one doing the same total work: per-profile
   `Dataset.read("TEMP")` calls (every profile three times; one small Rust
   read each, GIL released), the 64 256 x 256 tiles of a 2048 x 2048 float64
   grid (`Dataset.read` of one 512 KiB chunk each on a fresh handle, so each
   is decoded; a store made here in a temporary directory), and four `open_stacked(...).TEMP.values` (whose Rust
   read is already parallel).

Prints a table with the issue's targets and writes the figures to --out.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a worker thread per core whose idle spinning took a
# tenth of the samples of the thread runs below on two cores (none of them
# calls BLAS): one BLAS thread, set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import functools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

import atlas

ROOT = Path(__file__).resolve().parents[3]


def timed(fn: Callable[[], Any], repeat: int, warm: bool = True) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs (after one warm-up)."""
    if warm:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def in_threads(n_threads: int, jobs: Sequence[Callable[[], Any]]) -> float:
    """Seconds for ``n_threads`` threads to run ``jobs`` (split evenly)."""
    parts = [jobs[i::n_threads] for i in range(n_threads)]
    barrier = threading.Barrier(n_threads + 1)

    def run(part: Sequence[Callable[[], Any]]) -> None:
        barrier.wait()
        for job in part:
            job()

    threads = [threading.Thread(target=run, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def netcdf4_loop(files: list[Path]) -> list[np.ndarray]:
    out = []
    for f in files:
        with netCDF4.Dataset(f) as nc:
            out.append(nc["TEMP"][:])
    return out


def mfdataset(files: list[Path]) -> xr.Dataset:
    """open_mfdataset with the padding step: keep TEMP, pad ragged axes."""
    sizes = []
    for f in files:
        with netCDF4.Dataset(f) as nc:
            sizes.append((len(nc.dimensions["N_PROF"]), len(nc.dimensions["N_LEVELS"])))
    n_prof = max(s[0] for s in sizes)
    n_lev = max(s[1] for s in sizes)

    def pad(ds: xr.Dataset) -> xr.Dataset:
        t = ds[["TEMP"]]
        return t.pad(
            N_PROF=(0, n_prof - t.sizes["N_PROF"]), N_LEVELS=(0, n_lev - t.sizes["N_LEVELS"])
        )

    ds = xr.open_mfdataset(
        files, preprocess=pad, combine="nested", concat_dim="dataset", parallel=False
    )
    return ds


def grid_store(path: Path) -> Callable[[], list[Callable[[], Any]]]:
    """A store at ``path`` with one 2048 x 2048 float64 grid in 256 x 256
    chunks. Returns a maker of read jobs, one per chunk, on a fresh handle
    (an empty chunk cache: every job decodes its chunk)."""
    n, c = 2048, 256
    with atlas.Store.create(path) as store:
        ds = store.create_dataset("grid")
        ds.define_array("z", "float64", ["y", "x"], [n, n], chunks=[c, c])
        rng = np.random.default_rng(0)
        ds.write("z", rng.normal(size=(n, n)).cumsum(axis=1))

    def jobs() -> list[Callable[[], Any]]:
        handle = atlas.Store.open(path)["grid"]
        tiles = [(y, x) for y in range(0, n, c) for x in range(0, n, c)]
        return [functools.partial(handle.read, "z", [y, x], [c, c]) for y, x in tiles]

    return jobs


def cli_scan(store: Path) -> tuple[float, float]:
    """(seconds after open as `atlas scan` reports it, whole process seconds)."""
    cli = ROOT / "target" / "release" / "atlas"
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(cli), "scan", str(store), "TEMP", "--quiet"], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    m = re.search(r" in ([0-9.]+) (ms|s|µs)", out.stdout + out.stderr)
    if m is None:
        raise RuntimeError(f"cannot parse `atlas scan` output: {out.stdout!r}")
    scale = {"ms": 1e-3, "s": 1.0, "µs": 1e-6}[m.group(2)]
    return float(m.group(1)) * scale, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("argo_dir", type=Path)
    ap.add_argument("store", type=Path)
    ap.add_argument("--mf-count", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "bench-python.json")
    args = ap.parse_args()

    files = sorted(args.argo_dir.rglob("*.nc"))
    if not (args.store / "atlas.json").is_file():
        subprocess.run(
            [str(ROOT / "target" / "release" / "atlas"), "import", str(args.store), str(args.argo_dir), "--quiet"],
            check=True,
        )
    r: dict[str, Any] = {"n_profiles": len(files), "cpus": os.cpu_count(), "repeat": args.repeat}
    print(f"{len(files)} profiles; {os.cpu_count()} CPUs; medians of {args.repeat} after a warm-up\n")

    # 1. TEMP of every profile.
    t0 = time.perf_counter()
    store = atlas.Store.open(args.store)
    r["store_open_s"] = time.perf_counter() - t0
    names = store.list()
    assert len(names) == len(files), "the store must hold exactly the profiles"

    def stacked_values() -> np.ndarray:
        return atlas.open_stacked(store, "TEMP").TEMP.values

    def fresh_handle() -> float:
        s = atlas.Store.open(args.store)
        t = time.perf_counter()
        atlas.open_stacked(s, "TEMP").TEMP.values
        return time.perf_counter() - t

    temp = stacked_values()
    r["stacked_shape"] = list(temp.shape)
    r["stacked_cells_finite"] = int(np.isfinite(temp).sum())
    r["open_stacked_fresh_handle_s"] = statistics.median(fresh_handle() for _ in range(args.repeat))
    r["open_stacked_warm_s"] = timed(stacked_values, args.repeat)
    r["read_across_warm_s"] = timed(lambda: store.read_across("TEMP", names), args.repeat)
    scans = [cli_scan(args.store) for _ in range(args.repeat)]
    r["rust_read_array_across_cli_s"] = statistics.median(s[0] for s in scans)
    r["rust_cli_process_s"] = statistics.median(s[1] for s in scans)
    r["netcdf4_loop_s"] = timed(lambda: netcdf4_loop(files), max(1, args.repeat - 2))
    mf_files = files[: args.mf_count]
    t0 = time.perf_counter()
    mf = mfdataset(mf_files)
    r["mfdataset_open_s"] = time.perf_counter() - t0
    r["mfdataset_n_tasks_per_file"] = len(dict(mf["TEMP"].data.__dask_graph__())) / len(mf_files)
    t0 = time.perf_counter()
    mf["TEMP"].values
    r["mfdataset_values_s"] = time.perf_counter() - t0
    r["mfdataset_files"] = len(mf_files)
    r["mfdataset_scaled_all_s"] = (r["mfdataset_open_s"] + r["mfdataset_values_s"]) * len(files) / len(mf_files)

    # 2. One profile.
    some = files[:: max(1, len(files) // 20)][:20]
    nc_one = timed(lambda: [xr.open_dataset(f, engine="netcdf4").TEMP.values for f in some], args.repeat)
    at_one = timed(
        lambda: [
            xr.open_dataset(store, engine="atlas", group=f.stem).TEMP.values  # type: ignore[arg-type]
            for f in some
        ],
        args.repeat,
    )
    at_temp = timed(
        lambda: [
            xr.open_dataset(
                store,  # type: ignore[arg-type]
                engine="atlas",
                group=f.stem,
                variables=["TEMP"],
            ).TEMP.values
            for f in some
        ],
        args.repeat,
    )
    r["one_profile_netcdf4_engine_ms"] = nc_one / len(some) * 1e3
    r["one_profile_atlas_engine_ms"] = at_one / len(some) * 1e3
    r["one_profile_atlas_engine_only_temp_ms"] = at_temp / len(some) * 1e3

    # 3. Threads.
    handles = [store[n] for n in names]
    reads = [functools.partial(d.read, "TEMP") for d in handles] * 3
    in_threads(1, reads)  # warm
    one = statistics.median(in_threads(1, reads) for _ in range(args.repeat))
    two = statistics.median(in_threads(2, reads) for _ in range(args.repeat))
    r["threads_per_profile_reads_1_s"], r["threads_per_profile_reads_2_s"] = one, two
    with tempfile.TemporaryDirectory() as tmp:
        grid = grid_store(Path(tmp) / "grid")
        in_threads(1, grid())  # warm
        one_g = statistics.median(in_threads(1, grid()) for _ in range(args.repeat))
        two_g = statistics.median(in_threads(2, grid()) for _ in range(args.repeat))
    r["threads_grid_tiles_1_s"], r["threads_grid_tiles_2_s"] = one_g, two_g
    jobs = [stacked_values] * 4
    in_threads(2, jobs)  # warm
    one_s = statistics.median(in_threads(1, jobs) for _ in range(args.repeat))
    two_s = statistics.median(in_threads(2, jobs) for _ in range(args.repeat))
    r["threads_open_stacked_1_s"], r["threads_open_stacked_2_s"] = one_s, two_s

    # Report.
    ms = lambda s: f"{s * 1e3:9.1f} ms"  # noqa: E731
    stacked = r["open_stacked_warm_s"]
    rows = [
        ("Store.open (registry replay)", ms(r["store_open_s"]), ""),
        ("open_stacked(TEMP).values, fresh handle", ms(r["open_stacked_fresh_handle_s"]), ""),
        ("open_stacked(TEMP).values, warm", ms(stacked), ""),
        ("Store.read_across(TEMP) (padded Rust read)", ms(r["read_across_warm_s"]), ""),
        ("Rust read_array_across (atlas scan, after open)", ms(r["rust_read_array_across_cli_s"]),
         f"open_stacked fresh/Rust = {r['open_stacked_fresh_handle_s'] / r['rust_read_array_across_cli_s']:.1f}x (target <= 2x)"),
        ("atlas scan, whole process", ms(r["rust_cli_process_s"]), ""),
        ("netCDF4-python loop", ms(r["netcdf4_loop_s"]),
         f"{r['netcdf4_loop_s'] / stacked:.0f}x slower than open_stacked (target >= 20x)"),
        (f"open_mfdataset + padding, {len(mf_files)} files", ms(r["mfdataset_open_s"] + r["mfdataset_values_s"]),
         f"{r['mfdataset_n_tasks_per_file']:.0f} dask tasks per file"),
        (f"  scaled to {len(files)} files", ms(r["mfdataset_scaled_all_s"]),
         f"{r['mfdataset_scaled_all_s'] / stacked:.0f}x slower than open_stacked (target >= 100x)"),
        ("one profile, netcdf4 engine", f"{r['one_profile_netcdf4_engine_ms']:9.2f} ms", ""),
        ("one profile, atlas engine", f"{r['one_profile_atlas_engine_ms']:9.2f} ms",
         f"{r['one_profile_atlas_engine_ms'] / r['one_profile_netcdf4_engine_ms']:.2f} of netcdf4 (target <= 0.33)"),
        ("one profile, atlas engine, variables=['TEMP']", f"{r['one_profile_atlas_engine_only_temp_ms']:9.2f} ms",
         f"{r['one_profile_atlas_engine_only_temp_ms'] / r['one_profile_netcdf4_engine_ms']:.2f} of netcdf4"),
        (f"{len(reads)} Dataset.read('TEMP'), 1 thread", ms(one), ""),
        (f"{len(reads)} Dataset.read('TEMP'), 2 threads", ms(two), f"{one / two:.2f}x (target >= 1.6x)"),
        ("64 grid tiles decoded (512 KiB each), 1 thread", ms(one_g), ""),
        ("64 grid tiles decoded (512 KiB each), 2 threads", ms(two_g), f"{one_g / two_g:.2f}x (target >= 1.6x)"),
        ("4 x open_stacked values, 1 thread", ms(one_s), ""),
        ("4 x open_stacked values, 2 threads", ms(two_s), f"{one_s / two_s:.2f}x"),
    ]
    print(f"stacked TEMP: shape {r['stacked_shape']}, {r['stacked_cells_finite']} finite values\n")
    for label, value, note in rows:
        print(f"{label:50s} {value}   {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(r, indent=2))
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
