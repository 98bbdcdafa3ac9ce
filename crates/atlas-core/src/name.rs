//! Name validation for datasets, arrays and attributes.

use crate::error::{Error, Result};

/// Longest dataset, array or attribute name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Prefix of the store's own files at its root (`atlas.json`, `atlas.lock`,
/// `atlas.meta/`), which array directories must not take.
const RESERVED_PREFIX: &str = "atlas.";

fn common(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 255 bytes"
    } else if name.contains('\0') {
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
    common(kind, name)?;
    let reason = if name.contains('/') || name.contains('\\') {
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
    common("attribute", name)
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
