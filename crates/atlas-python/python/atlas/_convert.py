"""Python-side value conversions used by the extension module.

``attr_to_wire`` classifies an attribute value into one of ATLAS's attribute
types; ``coerce_array`` turns array data into the exact numpy form the Rust
side reads without copying.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from .errors import InvalidInputError

_I64 = np.iinfo(np.int64)
_U64 = np.iinfo(np.uint64)


def _ns(value: Any) -> int:
    """Nanoseconds since the Unix epoch of a datetime-like value."""
    if isinstance(value, _dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return int(np.datetime64(value, "ns").astype(np.int64))


def _is_datetime(value: Any) -> bool:
    return isinstance(value, (_dt.datetime, _dt.date, np.datetime64))


def _scalar(value: Any) -> tuple[str, Any]:
    if isinstance(value, (bool, np.bool_)):
        return "bool", bool(value)
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if _I64.min <= v <= _I64.max:
            return "int", v
        if 0 <= v <= _U64.max:
            return "uint", v
        raise InvalidInputError(f"integer attribute {v} does not fit 64 bits")
    if isinstance(value, (float, np.floating)):
        return "float", float(value)
    if isinstance(value, str):
        return "str", str(value)
    if _is_datetime(value):
        return "ts", _ns(value)
    raise InvalidInputError(
        f"attribute values are bool, int, float, str, datetime or lists of one of them, "
        f"not {type(value).__name__}"
    )


def attr_to_wire(value: Any) -> tuple[str, Any]:
    """``(tag, payload)`` for an attribute value; lists must be homogeneous.

    An empty list is stored as a list of floats. A list mixing ints and floats
    is a list of floats; a list of ints where some exceed ``int64`` is a list
    of ``uint64``.
    """
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return _scalar(value[()])
        if value.ndim != 1:
            raise InvalidInputError("array attributes must be one-dimensional")
        if value.dtype.kind == "M":
            return "ts_list", [int(v) for v in value.astype("datetime64[ns]").astype(np.int64)]
        value = list(value)
    if not isinstance(value, (list, tuple)):
        return _scalar(value)
    tagged = [_scalar(v) for v in value]
    tags = {t for t, _ in tagged}
    items = [v for _, v in tagged]
    if not tags:
        return "float_list", []
    if len(tags) == 1:
        (tag,) = tags
        return f"{tag}_list", items
    if tags <= {"int", "uint"}:
        if any(v < 0 for v in items):
            raise InvalidInputError("integer list mixes negative values and values beyond int64")
        return "uint_list", items
    if tags <= {"int", "uint", "float"}:
        return "float_list", [float(v) for v in items]
    raise InvalidInputError(f"attribute lists must hold one type, not {sorted(tags)}")


def coerce_array(data: Any, dtype: str) -> Any:
    """``data`` as an array of exactly ``dtype`` for a write.

    Numbers convert only within their kind or to a wider kind (``same_kind``
    casting: int → float yes, float → int no), and integers must fit the
    target. Timestamps come back as their ``int64`` nanoseconds; strings as
    ``(list_of_str, shape)``.
    """
    if dtype == "str":
        arr = np.asarray(data, dtype=object)
        cells = arr.ravel().tolist()
        for c in cells:
            if not isinstance(c, str):
                raise InvalidInputError(f"a string array takes str cells, not {type(c).__name__}")
        return cells, list(arr.shape)
    if dtype == "datetime64[ns]":
        arr = np.asarray(data)
        if arr.dtype.kind not in "MUO":
            raise InvalidInputError(f"a timestamp array takes datetime64 data, not {arr.dtype}")
        try:
            return np.ascontiguousarray(arr.astype("datetime64[ns]")).view(np.int64)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"cannot convert to datetime64[ns]: {e}") from None
    target = np.dtype(dtype)
    arr = np.asarray(data)
    if arr.dtype == target:
        return arr
    if not np.can_cast(arr.dtype, target, casting="same_kind") and not (
        arr.dtype.kind in "iub" and target.kind in "iu"
    ):
        raise InvalidInputError(f"cannot write {arr.dtype} data to a {target} array")
    if target.kind in "iu" and arr.size and arr.dtype.kind in "iu":
        info = np.iinfo(target)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise InvalidInputError(f"values {lo}..{hi} do not fit {target}")
    return arr.astype(target)
