"""The independent reader of atlas-netcdf's real-data tests (tests/it/samples.rs).

Reads NetCDF files with netCDF4-python (its own bundled libnetcdf, no code
shared with ATLAS) and writes what it sees as facts, with no ATLAS mapping
rule applied; the Rust test applies the documented rules to these facts and
compares them with what the store holds.

    python nc_reference.py dump OUT_DIR FILE...
        OUT_DIR/index.json: one entry per file (format, dimensions, global
        attributes, variables with dtype, dimensions, shape, attributes and
        default fill, the subgroups and the variables/attributes of
        user-defined types). Each variable's raw values, little-endian in C
        order, go to OUT_DIR/<file>_<var>.bin; NC_STRING values are listed in
        the JSON instead.
    python nc_reference.py make-unsupported PATH
        writes a NetCDF-4 file holding what ATLAS cannot import: nested
        groups and compound, vlen and enum variables and attributes.

Numbers in the JSON are exact: integers as integers, floats as the bits of
their float64 value (a float32 widens exactly).
"""

import json
import os
import sys

import netCDF4
import numpy as np


def num_values(arr):
    arr = np.asarray(arr).reshape(-1)
    if arr.dtype.kind == "f":
        return [int(x) for x in arr.astype("<f8").view("<u8")]
    return [int(x) for x in arr]


def attr_fact(name, value):
    """One attribute as netCDF4-python returns it."""
    if isinstance(value, str):
        # NC_CHAR (every NUL removed, invalid UTF-8 replaced) or one NC_STRING.
        return {"name": name, "kind": "text", "text": value}
    if isinstance(value, bytes):
        # netCDF4-python returns the raw bytes of a char `_FillValue`.
        return {"name": name, "kind": "bytes", "hex": value.hex()}
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return {"name": name, "kind": "strings", "strings": value}
    arr = np.asarray(value)
    if arr.dtype.kind in "iuf":
        return {
            "name": name,
            "kind": "num",
            "dtype": arr.dtype.name,
            "values": num_values(arr),
        }
    return {"name": name, "kind": "user-defined", "dtype": str(arr.dtype)}


def attrs_of(obj):
    return [attr_fact(n, obj.getncattr(n)) for n in obj.ncattrs()]


def user_defined(v):
    """The kind of a variable's user-defined type, or None."""
    t = v.datatype
    if isinstance(t, netCDF4.CompoundType):
        return "compound"
    if isinstance(t, netCDF4.EnumType):
        return "enum"
    if isinstance(t, netCDF4.VLType) and v.dtype is not str:
        return "vlen"
    return None


def groups_of(group, out):
    for g in group.groups.values():
        out.append({"path": g.path, "variables": list(g.variables)})
        groups_of(g, out)
    return out


def dump_var(v, out_dir, stem):
    fact = {
        "name": v.name,
        "dims": list(v.dimensions),
        "shape": [int(n) for n in v.shape],
        "attrs": attrs_of(v),
    }
    kind = user_defined(v)
    if kind is not None:
        fact.update(kind=kind, type_name=v.datatype.name)
        return fact
    # Raw values: no masking, scaling or char-to-string conversion.
    v.set_auto_maskandscale(False)
    v.set_always_mask(False)
    v.set_auto_chartostring(False)
    data = v[...]
    if v.dtype is str:
        values = np.asarray(data, dtype=object).reshape(-1)
        fact.update(kind="string", dtype="str", strings=[str(s) for s in values])
        return fact
    arr = np.asarray(data)
    dtype = np.dtype(v.dtype)
    fact.update(kind="char" if dtype.kind == "S" else "num", dtype=dtype.name)
    raw = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<")).tobytes()
    fact["data"] = f"{stem}.bin"
    with open(os.path.join(out_dir, fact["data"]), "wb") as f:
        f.write(raw)
    key = dtype.str[1:]
    if key in netCDF4.default_fillvals:
        fill = np.array(netCDF4.default_fillvals[key], dtype=dtype)
        if dtype.kind == "S":
            fact["default_fill_hex"] = fill.tobytes().hex()
        else:
            fact["default_fill"] = num_values(fill)
    return fact


def dump(out_dir, paths):
    os.makedirs(out_dir, exist_ok=True)
    index = []
    for i, path in enumerate(paths):
        with netCDF4.Dataset(path) as ds:
            entry = {
                "path": path,
                "data_model": ds.data_model,
                "dims": [
                    {"name": d.name, "len": len(d), "unlimited": d.isunlimited()}
                    for d in ds.dimensions.values()
                ],
                "attrs": attrs_of(ds),
                "groups": groups_of(ds, []),
                "vars": [
                    dump_var(v, out_dir, f"{i}_{j}")
                    for j, v in enumerate(ds.variables.values())
                ],
            }
        index.append(entry)
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f)


def make_unsupported(path):
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("x", 3)
        ok = ds.createVariable("plain", "f4", ("x",))
        ok[:] = [1.0, 2.0, 3.0]
        wind_t = ds.createCompoundType(
            np.dtype([("speed", "f4"), ("dir", "i2")]), "wind_t"
        )
        wind = ds.createVariable("wind", wind_t, ("x",))
        wind[:] = np.array([(1.5, 90), (2.5, 180), (0.0, 0)], dtype=wind_t.dtype)
        ragged_t = ds.createVLType(np.int32, "ragged_t")
        ragged = ds.createVariable("ragged", ragged_t, ("x",))
        for k in range(3):
            ragged[k] = np.arange(k + 1, dtype=np.int32)
        cloud_t = ds.createEnumType(np.uint8, "cloud_t", {"clear": 0, "cloudy": 1})
        cloud = ds.createVariable("cloud", cloud_t, ("x",))
        cloud[:] = np.array([0, 1, 0], dtype=np.uint8)
        ok.setncattr("calm", np.array([(0.0, 0)], dtype=wind_t.dtype)[0])
        obs = ds.createGroup("obs")
        obs.createVariable("u", "f8", ("x",))[:] = [0.5, 0.25, 0.125]
        obs.createGroup("qc").createVariable("flag", "i1", ("x",))[:] = [0, 1, 2]


def main(argv):
    if len(argv) >= 3 and argv[1] == "dump":
        dump(argv[2], argv[3:])
    elif len(argv) == 3 and argv[1] == "make-unsupported":
        make_unsupported(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
