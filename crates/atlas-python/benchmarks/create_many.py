"""Many small datasets created from Python: one call per dataset against one
``Store.create_datasets`` call.

Usage (from the repository root, after ``maturin develop --release``):

    .venv/bin/python crates/atlas-python/benchmarks/create_many.py \
        [--datasets 10000] [--repeat 3]

Each round writes a fresh store in a temporary directory, then flushes; the
two ways alternate round by round. Prints the median wall seconds of each
(the batch's dicts are built before its clock, as a caller holding its data
would; their build time is printed apart).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import atlas

ARRAYS = ("TEMP", "PSAL", "PRES")
LEVELS = 50


def _cells(i: int, k: int) -> np.ndarray:
    return (np.arange(LEVELS, dtype=np.float32) * 0.5 + i * 0.001 + k).astype(np.float32)


def per_call(path: Path, n: int) -> float:
    store = atlas.Store.create(path)
    t = time.perf_counter()
    for i in range(n):
        ds = store.create_dataset(f"profile_{i:07}")
        ds.set_attr("cycle_number", i)
        ds.set_attr("latitude", (i % 180) - 90.0)
        for k, a in enumerate(ARRAYS):
            ds.define_array(a, "float32", ["N_LEVELS"], [LEVELS])
            ds.write(a, _cells(i, k))
    store.flush()
    spent = time.perf_counter() - t
    store.close()
    return spent


def specs_of(n: int) -> list[atlas.DatasetSpec]:
    return [
        {
            "name": f"profile_{i:07}",
            "attrs": {"cycle_number": i, "latitude": (i % 180) - 90.0},
            "arrays": {a: {"dims": ["N_LEVELS"], "data": _cells(i, k)} for k, a in enumerate(ARRAYS)},
        }
        for i in range(n)
    ]


def batched(path: Path, specs: list[atlas.DatasetSpec]) -> float:
    store = atlas.Store.create(path)
    t = time.perf_counter()
    store.create_datasets(specs)
    store.flush()
    spent = time.perf_counter() - t
    store.close()
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    n = args.datasets
    t = time.perf_counter()
    specs = specs_of(n)
    build = time.perf_counter() - t
    calls: list[float] = []
    batches: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat + 1):
            a = per_call(Path(tmp) / f"c{r}", n)
            b = batched(Path(tmp) / f"b{r}", specs)
            if r > 0:  # the first round warms up
                calls.append(a)
                batches.append(b)
    c, b = statistics.median(calls), statistics.median(batches)
    print(f"{n} datasets x {len(ARRAYS)} arrays of {LEVELS} float32, + flush (median of {args.repeat}):")
    print(f"  one call per dataset:   {c:.3f} s  {[round(x, 3) for x in calls]}")
    print(f"  Store.create_datasets:  {b:.3f} s  {[round(x, 3) for x in batches]}  ({c / b:.1f}x)")
    print(f"  (building the {n} dicts: {build:.3f} s, before the clock)")


if __name__ == "__main__":
    main()
