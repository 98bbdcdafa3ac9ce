"""The exception tree: classes, built-in bases, kinds, pickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import atlas
from atlas import _atlas, errors


def test_the_package_exports_every_error() -> None:
    # `atlas.__all__` spells the error names out (type checkers and stubtest
    # read it literally): it must not fall behind `errors.__all__`.
    missing = set(errors.__all__) - set(atlas.__all__)
    assert not missing, f"atlas.__all__ lacks {sorted(missing)}"
    assert all(getattr(atlas, n) is getattr(errors, n) for n in errors.__all__)


def test_every_rust_kind_has_a_class() -> None:
    kinds = _atlas.error_kinds()
    assert kinds == [k.value for k in errors.ErrorKind]
    classes = [
        getattr(errors, n) for n in errors.__all__ if n.endswith("Error") and n != "AtlasError"
    ]
    covered = {c.kind for c in classes}
    assert covered == set(kinds)
    for c in classes:
        assert issubclass(c, atlas.AtlasError)


@pytest.mark.parametrize(
    ("cls", "builtin", "kind"),
    [
        (atlas.NotFoundError, KeyError, "not_found"),
        (atlas.DatasetNotFoundError, KeyError, "not_found"),
        (atlas.ArrayNotFoundError, KeyError, "not_found"),
        (atlas.StoreNotFoundError, FileNotFoundError, "not_found"),
        (atlas.StoreExistsError, FileExistsError, "already_exists"),
        (atlas.InvalidInputError, ValueError, "invalid_input"),
        (atlas.AtlasIOError, OSError, "io"),
        (atlas.ForkedHandleError, RuntimeError, "unsupported"),
    ],
)
def test_builtin_bases(cls: type[atlas.AtlasError], builtin: type[Exception], kind: str) -> None:
    assert issubclass(cls, builtin)
    e = cls("message text")
    assert str(e) == "message text"
    assert e.kind == kind


def _raised(store_path: Path) -> list[atlas.AtlasError]:
    """Real errors from the Rust side, one per reachable kind."""
    out: list[atlas.AtlasError] = []
    s = atlas.Store.create(store_path / "a")
    ds = s.create_dataset("d")
    ds.define_array("v", "f4", ["n"], [2])
    s.flush()
    attempts = [
        lambda: atlas.Store.open(store_path / "missing"),
        lambda: atlas.Store.create(store_path / "a"),
        lambda: s["nope"],
        lambda: ds.read("nope"),
        lambda: s.create_dataset("d"),
        lambda: s.create_dataset("bad/name\x00"),
        lambda: ds.read("v", [5], [1]),
        lambda: atlas.Store.open(store_path / "a", mode="a"),
        lambda: atlas.Store.open("ftp://host/store"),
    ]
    for f in attempts:
        with pytest.raises(atlas.AtlasError) as e:
            f()
        out.append(e.value)
    return out


def test_rust_errors_map_to_the_tree(store_path: Path) -> None:
    got = _raised(store_path)
    assert [type(e).__name__ for e in got] == [
        "StoreNotFoundError",
        "StoreExistsError",
        "DatasetNotFoundError",
        "ArrayNotFoundError",
        "AlreadyExistsError",
        "InvalidInputError",
        "InvalidInputError",
        "LockedError",
        "UnsupportedError",
    ]
    assert [e.kind for e in got] == [
        "not_found",
        "already_exists",
        "not_found",
        "not_found",
        "already_exists",
        "invalid_input",
        "invalid_input",
        "conflict",
        "unsupported",
    ]
    assert "missing" in str(got[0]) and "atlas.json" in str(got[0])
    assert isinstance(got[0], FileNotFoundError) and isinstance(got[0], KeyError)
    assert '"nope"' in str(got[2])


def test_errors_survive_pickling(store_path: Path) -> None:
    for e in _raised(store_path):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e)
        assert str(back) == str(e)
        assert back.kind == e.kind
        assert back.args == e.args
