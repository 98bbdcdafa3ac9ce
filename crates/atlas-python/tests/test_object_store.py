"""Stores at object-store URLs: `memory://` in this process, and S3 through the
moto server CI starts (`ATLAS_TEST_MOTO_ENDPOINT`; skipped without it unless
`ATLAS_REQUIRE_S3` is set)."""

from __future__ import annotations

import os
import pickle
import subprocess
import uuid

import numpy as np
import pytest
import xarray as xr

import atlas


def _write_profile(store: atlas.Store, name: str, seed: float) -> np.ndarray:
    ds = store.create_dataset(name)
    ds.define_array("TEMP", "float32", ["N_LEVELS"], [40])
    values = (np.arange(40, dtype=np.float32) * 0.25 + seed).astype(np.float32)
    ds.write("TEMP", values)
    return values


def test_memory_url_round_trip() -> None:
    url = f"memory://py-{uuid.uuid4().hex}/ocean"
    with atlas.Store.create(url) as store:
        want = _write_profile(store, "p1", 3.0)
    assert store.path == url
    again = atlas.Store.open(url)
    np.testing.assert_array_equal(again["p1"].read("TEMP"), want)
    writer = atlas.Store.open(url, mode="a")
    _write_profile(writer, "p2", 4.0)
    writer.flush()
    assert sorted(atlas.Store.open(url).list()) == ["p1", "p2"]
    opened = xr.open_dataset(url, engine="atlas", group="p1")
    np.testing.assert_array_equal(opened["TEMP"].values, want)


def test_missing_s3_credentials_name_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    with pytest.raises(atlas.AtlasError) as e:
        atlas.Store.open("s3://bucket/store")
    assert "AWS_ACCESS_KEY_ID" in str(e.value)


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> str:
    endpoint = os.environ.get("ATLAS_TEST_MOTO_ENDPOINT")
    if not endpoint:
        if os.environ.get("ATLAS_REQUIRE_S3"):
            pytest.fail("ATLAS_REQUIRE_S3 is set but ATLAS_TEST_MOTO_ENDPOINT is not")
        pytest.skip("ATLAS_TEST_MOTO_ENDPOINT unset")
    bucket = f"py-{uuid.uuid4().hex[:12]}"
    code = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
         f"{endpoint}/{bucket}", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "moto:moto"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert code == "200", f"creating bucket {bucket}: HTTP {code}"
    for k, v in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "moto",
        "AWS_SECRET_ACCESS_KEY": "moto",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    return f"s3://{bucket}/store"


def test_s3_store_through_moto(moto_url: str) -> None:
    with atlas.Store.create(moto_url) as store:
        want = _write_profile(store, "p1", 1.5)
    reader = atlas.Store.open(moto_url)
    np.testing.assert_array_equal(reader["p1"].read("TEMP"), want)
    # A pickled handle reopens by its URL (what a dask worker does).
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.path == moto_url
    np.testing.assert_array_equal(clone["p1"].read("TEMP"), want)
    opened = xr.open_dataset(moto_url, engine="atlas", group="p1")
    np.testing.assert_array_equal(opened["TEMP"].values, want)
