//! Where a store lives, as the user writes it: a path or a URL.
//!
//! `file://` URLs and plain paths are local stores. Object-store URLs
//! (`s3://`, `gs://`, `az://`, `memory://`) open through
//! [`storage_for`] (with the `object-store` feature, on by default); a URL is
//! never mistaken for a relative directory named `s3:`.

use std::path::PathBuf;
use std::sync::Arc;

use array_format::Storage;

use crate::error::{Error, Result};

/// The storage backend and root a location names: the local filesystem for a
/// path or `file://` URL, an object store for `s3://bucket/prefix`,
/// `gs://bucket/prefix`, `az://container/prefix` or `memory://name/prefix`.
///
/// Object-store settings come from the environment (`AWS_*`, `GOOGLE_*`,
/// `AZURE_*`: for example `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`), overridden by `options` (the
/// `object_store` builder keys such as `aws_endpoint`, and ATLAS's own
/// `atlas_max_retries`, `atlas_retry_timeout_ms`, `atlas_request_timeout_ms`).
/// See `docs/object-storage.md`.
///
/// ```
/// let (storage, root) = atlas_core::storage_for("memory://doc/store", &[]).unwrap();
/// assert!(storage.is_object_store());
/// assert_eq!(root, std::path::Path::new("store"));
/// let (local, root) = atlas_core::storage_for("/data/store", &[]).unwrap();
/// assert!(!local.is_object_store());
/// assert_eq!(root, std::path::Path::new("/data/store"));
/// ```
pub fn storage_for(
    location: &str,
    options: &[(String, String)],
) -> Result<(Arc<dyn Storage>, PathBuf)> {
    #[cfg(feature = "object-store")]
    if array_format::ObjectStorage::handles(location) {
        let (storage, root) =
            array_format::ObjectStorage::from_url(location, options).map_err(|e| {
                match e.kind() {
                    crate::ErrorKind::InvalidInput => Error::UnsupportedLocation {
                        location: location.to_owned(),
                        reason: std::error::Error::source(&e)
                            .map_or_else(|| e.to_string(), ToString::to_string),
                    },
                    _ => Error::from(e),
                }
            })?;
        return Ok((Arc::new(storage), root));
    }
    let _ = options;
    Ok((Arc::new(array_format::LocalStorage), local_path(location)?))
}

/// URL schemes of object stores (served by [`storage_for`] with the
/// `object-store` feature, except `http(s)` and `gcs`).
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
        if cfg!(feature = "object-store") && lower != "http" && lower != "https" && lower != "gcs" {
            format!("{lower}:// is an object store, not a local directory")
        } else {
            format!(
                "object storage ({lower}://) is not available in this build; \
                 use a local directory or a file:// URL"
            )
        }
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
