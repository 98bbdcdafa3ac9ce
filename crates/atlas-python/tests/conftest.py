"""Fixtures: temporary stores, and a store of real Argo profiles imported by the
`atlas` tool (the archive `argo_core_profiles_DR.tar.zst` in `.ci/data`, `../shared/data`,
or `$ATLAS_REALDATA_DIR`, as the Rust real-data tests find it); the Iris and
ESMValTool sample files the Rust tests download into `<target>/realdata/samples`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ARCHIVE = "argo_core_profiles_DR.tar.zst"
# Every 300th profile of the 3,000 in sorted path order: ten files spread over
# the data centres, delayed-mode (D) and real-time (R) ones. ATLAS_ARGO_ALL=1
# runs the real-data tests on every profile of the archive (slow: the import
# alone takes about a minute).
ARGO_STRIDE = 300


def argo_all() -> bool:
    return bool(os.environ.get("ATLAS_ARGO_ALL"))


def _required() -> bool:
    return bool(os.environ.get("ATLAS_REQUIRE_REALDATA"))


def _missing(what: str) -> None:
    if _required():
        pytest.fail(f"{what} (required: ATLAS_REQUIRE_REALDATA is set)")
    pytest.skip(f"SKIPPED: {what}")


def _target_dir() -> Path:
    t = os.environ.get("CARGO_TARGET_DIR")
    if t:
        return Path(t) if Path(t).is_absolute() else ROOT / t
    return ROOT / "target"


def atlas_cli() -> Path:
    """The `atlas` tool: $ATLAS_CLI, else a built one, else `cargo build -p atlas-cli`."""
    env = os.environ.get("ATLAS_CLI")
    if env:
        return Path(env)
    for profile in ("release", "debug"):
        p = _target_dir() / profile / "atlas"
        if p.is_file():
            return p
    subprocess.run(["cargo", "build", "-q", "-p", "atlas-cli"], cwd=ROOT, check=True)
    return _target_dir() / "debug" / "atlas"


def _argo_dir(tmp_factory: pytest.TempPathFactory) -> Path | None:
    unpacked = _target_dir() / "realdata" / "argo"
    if unpacked.is_dir():
        return unpacked
    dirs = [
        os.environ.get("ATLAS_REALDATA_DIR"),
        str(ROOT.parent / "shared" / "data"),
        str(ROOT / ".ci" / "data"),
    ]
    for d in dirs:
        if d and (Path(d) / ARCHIVE).is_file():
            dest = tmp_factory.mktemp("argo")
            subprocess.run(
                f"zstd -dc '{Path(d) / ARCHIVE}' | tar -x -C '{dest}'",
                shell=True,
                check=True,
            )
            return dest
    return None


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture(scope="session")
def argo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = _argo_dir(tmp_path_factory)
    if d is None:
        _missing(f"no Argo archive {ARCHIVE} (.ci/data, ../shared/data or $ATLAS_REALDATA_DIR)")
    assert d is not None
    files = sorted(d.rglob("*.nc"))
    assert len(files) >= ARGO_STRIDE, f"only {len(files)} Argo profiles in {d}"
    return files if argo_all() else files[::ARGO_STRIDE]


@pytest.fixture(scope="session")
def argo_store(tmp_path_factory: pytest.TempPathFactory, argo_files: list[Path]) -> Path:
    if shutil.which("zstd") is None and not argo_files:
        _missing("zstd is not installed")
    store = tmp_path_factory.mktemp("argo_store") / "store"
    subprocess.run(
        [str(atlas_cli()), "import", str(store), *map(str, argo_files), "--quiet"],
        check=True,
        capture_output=True,
    )
    return store


@pytest.fixture(scope="session")
def sample_files() -> list[Path]:
    """The Iris sample files and every 10th ESMValTool (CMIP6) file (all of
    them with ATLAS_ARGO_ALL=1), as `atlas-netcdf`'s tests download them."""
    d = _target_dir() / "realdata" / "samples"
    if not (d / ".complete").is_file():
        _missing(f"no sample files in {d} (the atlas-netcdf real-data tests download them)")
    iris = sorted((d / "iris").rglob("*.nc"))
    esmvaltool = sorted((d / "esmvaltool").rglob("*.nc"))
    assert iris and esmvaltool, f"sample files missing under {d}"
    return iris + (esmvaltool if argo_all() else esmvaltool[::10])


@pytest.fixture(scope="session")
def atlas_tool() -> Path:
    """The `atlas` command-line tool (see `atlas_cli`)."""
    return atlas_cli()
