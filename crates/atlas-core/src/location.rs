//! Where a store lives, as the user writes it: a path or a URL.
//!
//! `file://` URLs and plain paths are local stores. Object-store URLs (`s3://`,
//! `gs://`, `az://`, …) are recognised and refused with
//! [`Error::UnsupportedLocation`] until an object-store backend exists, so a URL
//! is never mistaken for a relative directory named `s3:`.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// URL schemes of object stores: recognised, not yet served.
const OBJECT_STORE_SCHEMES: &[&str] = &[
    "s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "adl", "http", "https", "memory",
];

/// The local directory a location names: a path, or a `file://` URL.
///
/// ```
/// use atlas_core::local_path;
/// assert_eq!(local_path("/data/store").unwrap(), std::path::Path::new("/data/store"));
/// assert_eq!(local_path("file:///data/store").unwrap(), std::path::Path::new("/data/store"));
/// let e = local_path("s3://bucket/store").unwrap_err();
/// assert_eq!(e.kind(), atlas_core::ErrorKind::Unsupported);
/// ```
pub fn local_path(location: &str) -> Result<PathBuf> {
    let Some((scheme, rest)) = location.split_once("://") else {
        return Ok(PathBuf::from(location));
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        // Not a URL (for example a directory literally named "a b://c").
        return Ok(PathBuf::from(location));
    }
    let lower = scheme.to_ascii_lowercase();
    if lower == "file" {
        // file:///abs/path or file://localhost/abs/path.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(Error::UnsupportedLocation {
                location: location.to_owned(),
                reason: "a file:// URL needs an absolute path (file:///path/to/store)".to_owned(),
            });
        }
        return Ok(PathBuf::from(path));
    }
    let reason = if OBJECT_STORE_SCHEMES.contains(&lower.as_str()) {
        format!(
            "object storage ({lower}://) is not available in this build yet; \
             use a local directory or a file:// URL"
        )
    } else {
        format!("unknown URL scheme {scheme:?}; use a path or a file:// URL")
    };
    Err(Error::UnsupportedLocation {
        location: location.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        assert_eq!(local_path("rel/dir").unwrap(), PathBuf::from("rel/dir"));
        assert_eq!(local_path("s3:").unwrap(), PathBuf::from("s3:"));
        assert_eq!(
            local_path("file://localhost/x").unwrap(),
            PathBuf::from("/x")
        );
        for url in [
            "s3://b/p",
            "gs://b",
            "az://c/p",
            "HTTPS://h/x",
            "weird+x://y",
        ] {
            let e = local_path(url).unwrap_err();
            assert!(matches!(e, Error::UnsupportedLocation { .. }), "{url}");
            assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
        }
        assert!(local_path("file://relative").is_err());
    }
}
