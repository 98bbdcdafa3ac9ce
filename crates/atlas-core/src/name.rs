//! Name validation for datasets, arrays and attributes.

use crate::error::{Error, Result};

/// Longest dataset, array or attribute name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Prefix of the store's own files at its root (`atlas.json`, `atlas.lock`,
/// `atlas.meta/`), which array directories must not take.
const RESERVED_PREFIX: &str = "atlas.";

/// Whether `name` holds a NUL byte, and whether it holds a path separator
/// (`/` or `\`): one pass with no early exit, which the compiler
/// vectorizes. Names are short and checked by the hundred thousand in an
/// import, where three `contains` scans each cost more than the name.
fn scan(name: &str) -> (bool, bool) {
    let (mut nul, mut sep) = (false, false);
    for &b in name.as_bytes() {
        nul |= b == 0;
        sep |= b == b'/' || b == b'\\';
    }
    (nul, sep)
}

/// The rules every name follows (`nul`: it holds a NUL byte).
fn common(kind: &'static str, name: &str, nul: bool) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 255 bytes"
    } else if nul {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        kind,
        name: name.to_owned(),
        reason,
    })
}

fn path_safe(kind: &'static str, name: &str) -> Result<()> {
    let (nul, sep) = scan(name);
    common(kind, name, nul)?;
    let reason = if sep {
        "contains a path separator"
    } else if name == "." || name == ".." {
        "is `.` or `..`"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        kind,
        name: name.to_owned(),
        reason,
    })
}

/// Checks a dataset name: 1–255 bytes, no NUL, no `/`, not `.` or `..`.
pub fn validate_dataset_name(name: &str) -> Result<()> {
    path_safe("dataset", name)
}

/// Checks an array name. Arrays name directories in the store, so on top of the
/// dataset rules a name may not start with `.` nor with `atlas.` (the store's
/// own files).
pub fn validate_array_name(name: &str) -> Result<()> {
    path_safe("array", name)?;
    let reason = if name.starts_with('.') {
        "starts with `.` (reserved for store files)"
    } else if name
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX))
    {
        "starts with `atlas.` in any letter case (reserved for store files)"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        kind: "array",
        name: name.to_owned(),
        reason,
    })
}

/// Checks an attribute name: 1–255 bytes, no NUL.
pub fn validate_attribute_name(name: &str) -> Result<()> {
    common("attribute", name, scan(name).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_rejected() {
        for bad in ["", "a/b", ".", "..", "x\0y", &"n".repeat(256)] {
            assert!(validate_dataset_name(bad).is_err(), "{bad:?}");
            assert!(validate_array_name(bad).is_err(), "{bad:?}");
        }
        for bad in [".hidden", "atlas.json", "atlas.lock", "atlas.meta"] {
            assert!(validate_array_name(bad).is_err(), "{bad:?}");
            assert!(validate_dataset_name(bad).is_ok(), "{bad:?}");
        }
        for good in ["temperature", "jan_2024", "R1900_001.nc", "ä b"] {
            assert!(validate_array_name(good).is_ok());
        }
        assert!(validate_attribute_name("").is_err());
        assert!(validate_attribute_name("a\0").is_err());
        assert!(validate_attribute_name("m/s").is_ok());
        assert!(validate_array_name("a\\b").is_err());
        // Both faults: NUL is named first, whatever the order.
        for both in ["a/\0", "\0/a"] {
            let e = validate_dataset_name(both).unwrap_err().to_string();
            assert!(e.contains("NUL"), "{e}");
        }
        assert!(validate_attribute_name("units").is_ok());
    }
}
