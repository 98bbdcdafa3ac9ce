//! The in-memory object store behind the server: buckets, objects, multipart uploads.
//!
//! **Invariant:** every conditional write checks its precondition and applies the write
//! under the one lock of [`Store`], so two racing conditional writes from the same
//! version can never both succeed: the store is an oracle for races.
//!
//! **Invariant:** nothing becomes visible before the operation that publishes it
//! (`put`, `complete_multipart`) has passed every check; parts of an unfinished upload
//! live outside the bucket's object map.
//!
//! This module knows nothing of HTTP, S3 XML or faults; `backend.rs` translates.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::Mutex;

/// The smallest part S3 accepts in a multipart upload, except for the last part.
pub(crate) const MIN_PART_SIZE_BYTES: usize = 5 * 1024 * 1024;

/// The most keys (and common prefixes) one list page holds, as in S3.
pub(crate) const MAX_KEYS_PER_PAGE: usize = 1000;

/// One stored object version.
#[derive(Clone, Debug)]
pub(crate) struct Object {
    pub(crate) data: Bytes,
    /// The entity tag without quotes; unique per write.
    pub(crate) etag: String,
    /// The version number Google Cloud Storage calls the generation: unique
    /// per write and increasing (the store's write counter at the write).
    pub(crate) generation: u64,
    pub(crate) last_modified: SystemTime,
}

/// What a request asks of the current version before it reads or writes.
///
/// Built from `If-Match` / `If-None-Match` (S3) or `x-goog-if-generation-match`
/// (Google Cloud Storage); `None` in a field means the header was absent.
#[derive(Clone, Debug, Default)]
#[expect(
    clippy::struct_field_names,
    reason = "named after the headers they come from"
)]
pub(crate) struct Conditions {
    pub(crate) if_match: Option<EtagCondition>,
    pub(crate) if_none_match: Option<EtagCondition>,
    /// The generation the current version must have; `0` means "no current
    /// version" (create only if absent).
    pub(crate) if_generation_match: Option<u64>,
}

/// The value of an `If-Match` or `If-None-Match` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EtagCondition {
    /// `*`: any current version.
    Any,
    /// One entity tag, without quotes.
    Tag(String),
}

/// Why a store operation did not happen. Each maps to one S3 error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    NoSuchBucket,
    NoSuchKey,
    /// `If-Match` or `If-None-Match` rejected a write (412), or `If-Match` a read (412).
    PreconditionFailed,
    /// `If-None-Match` matched on a read (304).
    NotModified,
    NoSuchUpload,
    /// A completed part is missing, or its `ETag` differs from the uploaded one.
    InvalidPart,
    /// Completed parts are not in ascending order, or the list is empty.
    InvalidPartOrder,
    /// A part other than the last is smaller than [`MIN_PART_SIZE_BYTES`].
    EntityTooSmall,
    BucketAlreadyOwnedByYou,
}

/// One entry of a list page: an object or a common prefix (with a delimiter).
#[derive(Clone, Debug)]
pub(crate) enum ListEntry {
    Object { key: String, object: Object },
    CommonPrefix(String),
}

/// The question a `ListObjectsV2` request asks.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListQuery {
    pub(crate) prefix: String,
    pub(crate) delimiter: Option<String>,
    /// Entries at or before this marker (a key or a common prefix) were listed already.
    pub(crate) after: Option<String>,
    pub(crate) max_keys: usize,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub(crate) struct ListPage {
    pub(crate) entries: Vec<ListEntry>,
    /// The marker to continue from, present when more entries follow.
    pub(crate) next_after: Option<String>,
}

#[derive(Debug)]
struct Part {
    data: Bytes,
    etag: String,
}

#[derive(Debug)]
struct Upload {
    bucket: String,
    key: String,
    parts: BTreeMap<i32, Part>,
}

#[derive(Debug, Default)]
struct State {
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    uploads: HashMap<String, Upload>,
    /// Counts every write; part of every `ETag` and upload id, so both are unique.
    n_writes: u64,
}

impl State {
    fn bucket(&self, bucket: &str) -> Result<&BTreeMap<String, Object>, Failure> {
        self.buckets.get(bucket).ok_or(Failure::NoSuchBucket)
    }

    fn bucket_mut(&mut self, bucket: &str) -> Result<&mut BTreeMap<String, Object>, Failure> {
        self.buckets.get_mut(bucket).ok_or(Failure::NoSuchBucket)
    }

    /// A fresh `ETag`: a hash of the content and a write counter, so two writes of the
    /// same bytes still get different tags (a reader can tell the versions apart).
    fn next_etag(&mut self, data: &[u8], suffix: &str) -> String {
        self.n_writes += 1;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut hasher);
        format!("{:016x}{:08x}{suffix}", hasher.finish(), self.n_writes)
    }
}

/// The store: all state behind one lock.
#[derive(Debug, Default)]
pub(crate) struct Store {
    state: Mutex<State>,
}

/// Checks the write preconditions against the current version (`None` = absent).
fn check_write(current: Option<&Object>, conditions: &Conditions) -> Result<(), Failure> {
    if let Some(cond) = &conditions.if_match {
        match (cond, current) {
            (_, None) => return Err(Failure::PreconditionFailed),
            (EtagCondition::Tag(tag), Some(object)) if *tag != object.etag => {
                return Err(Failure::PreconditionFailed);
            }
            _ => {}
        }
    }
    if let (Some(cond), Some(object)) = (&conditions.if_none_match, current) {
        let matches = match cond {
            EtagCondition::Any => true,
            EtagCondition::Tag(tag) => *tag == object.etag,
        };
        if matches {
            return Err(Failure::PreconditionFailed);
        }
    }
    check_generation(current, conditions)
}

/// Checks `x-goog-if-generation-match` against the current version.
fn check_generation(current: Option<&Object>, conditions: &Conditions) -> Result<(), Failure> {
    match (conditions.if_generation_match, current) {
        (None, _) | (Some(0), None) => Ok(()),
        (Some(want), Some(object)) if want == object.generation => Ok(()),
        _ => Err(Failure::PreconditionFailed),
    }
}

/// Checks the read preconditions against an existing object.
fn check_read(object: &Object, conditions: &Conditions) -> Result<(), Failure> {
    if let Some(EtagCondition::Tag(tag)) = &conditions.if_match {
        if *tag != object.etag {
            return Err(Failure::PreconditionFailed);
        }
    }
    check_generation(Some(object), conditions)?;
    match &conditions.if_none_match {
        Some(EtagCondition::Any) => Err(Failure::NotModified),
        Some(EtagCondition::Tag(tag)) if *tag == object.etag => Err(Failure::NotModified),
        _ => Ok(()),
    }
}

/// The common prefix `key` rolls up into, if the query has a delimiter and the key
/// holds one after the prefix.
fn common_prefix<'k>(query: &ListQuery, key: &'k str) -> Option<&'k str> {
    let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty())?;
    let rest = &key[query.prefix.len()..];
    let idx = rest.find(delimiter)?;
    Some(&key[..query.prefix.len() + idx + delimiter.len()])
}

impl Store {
    /// Creates a bucket; creating an existing bucket is an error, as in S3 (us-east-1
    /// aside), so tests notice a double setup.
    pub(crate) fn create_bucket(&self, bucket: &str) -> Result<(), Failure> {
        let mut state = self.state.lock();
        if state.buckets.contains_key(bucket) {
            return Err(Failure::BucketAlreadyOwnedByYou);
        }
        state.buckets.insert(bucket.to_owned(), BTreeMap::new());
        Ok(())
    }

    /// Creates a bucket unless it exists.
    pub(crate) fn ensure_bucket(&self, bucket: &str) {
        self.state
            .lock()
            .buckets
            .entry(bucket.to_owned())
            .or_default();
    }

    pub(crate) fn bucket_exists(&self, bucket: &str) -> bool {
        self.state.lock().buckets.contains_key(bucket)
    }

    pub(crate) fn bucket_names(&self) -> Vec<String> {
        self.state.lock().buckets.keys().cloned().collect()
    }

    /// Writes an object if `conditions` hold; check and write under one lock.
    pub(crate) fn put(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        conditions: &Conditions,
    ) -> Result<Object, Failure> {
        let mut state = self.state.lock();
        check_write(state.bucket(bucket)?.get(key), conditions)?;
        let object = Object {
            etag: state.next_etag(&data, ""),
            generation: state.n_writes,
            data,
            last_modified: SystemTime::now(),
        };
        state
            .bucket_mut(bucket)?
            .insert(key.to_owned(), object.clone());
        Ok(object)
    }

    /// Reads an object (the whole of it; the caller cuts ranges) if `conditions` hold.
    pub(crate) fn get(
        &self,
        bucket: &str,
        key: &str,
        conditions: &Conditions,
    ) -> Result<Object, Failure> {
        let state = self.state.lock();
        let Some(object) = state.bucket(bucket)?.get(key) else {
            // If-Match on a missing object is a failed precondition in HTTP terms, but
            // S3 answers 404 first; clients map both to "not there".
            return Err(Failure::NoSuchKey);
        };
        check_read(object, conditions)?;
        Ok(object.clone())
    }

    /// The size of an object, if it exists (for resolving suffix ranges in the log).
    pub(crate) fn size(&self, bucket: &str, key: &str) -> Option<u64> {
        let state = self.state.lock();
        Some(state.buckets.get(bucket)?.get(key)?.data.len() as u64)
    }

    /// Deletes an object; deleting a missing key succeeds, as in S3.
    pub(crate) fn delete(&self, bucket: &str, key: &str) -> Result<(), Failure> {
        self.state.lock().bucket_mut(bucket)?.remove(key);
        Ok(())
    }

    /// The sorted keys of a bucket (empty if it does not exist).
    pub(crate) fn keys(&self, bucket: &str) -> Vec<String> {
        let state = self.state.lock();
        state
            .buckets
            .get(bucket)
            .map(|objects| objects.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// One page of a `ListObjectsV2`.
    ///
    /// The marker `after` is the last entry of the previous page. A key is skipped if it
    /// sorts at or before the marker, or if its common prefix does: keys sharing a
    /// prefix are contiguous in sorted order, so a common prefix at or before the
    /// marker was listed already, with all its keys.
    pub(crate) fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, Failure> {
        let state = self.state.lock();
        let objects = state.bucket(bucket)?;
        let after = query.after.as_deref();
        let lower = match after {
            Some(marker) if marker >= query.prefix.as_str() => Bound::Excluded(marker),
            _ => Bound::Included(query.prefix.as_str()),
        };
        let mut entries = Vec::new();
        let mut truncated = false;
        for (key, object) in objects.range::<str, _>((lower, Bound::Unbounded)) {
            if !key.starts_with(&query.prefix) {
                break;
            }
            let entry = match common_prefix(query, key) {
                Some(cp) => {
                    if after.is_some_and(|marker| cp <= marker) {
                        continue;
                    }
                    if let Some(ListEntry::CommonPrefix(last)) = entries.last() {
                        if last == cp {
                            continue;
                        }
                    }
                    ListEntry::CommonPrefix(cp.to_owned())
                }
                None => ListEntry::Object {
                    key: key.clone(),
                    object: object.clone(),
                },
            };
            if entries.len() == query.max_keys {
                truncated = true;
                break;
            }
            entries.push(entry);
        }
        let next_after = if truncated {
            entries.last().map(|entry| match entry {
                ListEntry::Object { key, .. } => key.clone(),
                ListEntry::CommonPrefix(cp) => cp.clone(),
            })
        } else {
            None
        };
        Ok(ListPage {
            entries,
            next_after,
        })
    }

    /// Starts a multipart upload and returns its id.
    pub(crate) fn create_multipart(&self, bucket: &str, key: &str) -> Result<String, Failure> {
        let mut state = self.state.lock();
        state.bucket(bucket)?;
        state.n_writes += 1;
        let upload_id = format!("upload-{:08x}", state.n_writes);
        state.uploads.insert(
            upload_id.clone(),
            Upload {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                parts: BTreeMap::new(),
            },
        );
        Ok(upload_id)
    }

    fn upload_mut<'s>(
        state: &'s mut State,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<&'s mut Upload, Failure> {
        match state.uploads.get_mut(upload_id) {
            Some(upload) if upload.bucket == bucket && upload.key == key => Ok(upload),
            _ => Err(Failure::NoSuchUpload),
        }
    }

    /// Stores one part (replacing an earlier upload of the same number); returns its `ETag`.
    pub(crate) fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        data: Bytes,
    ) -> Result<String, Failure> {
        let mut state = self.state.lock();
        Self::upload_mut(&mut state, bucket, key, upload_id)?;
        let etag = state.next_etag(&data, "");
        let upload = Self::upload_mut(&mut state, bucket, key, upload_id)?;
        upload.parts.insert(
            part_number,
            Part {
                data,
                etag: etag.clone(),
            },
        );
        Ok(etag)
    }

    /// Publishes an upload from the listed parts `(number, etag)` if `conditions` hold;
    /// check and write under one lock. On success the upload is gone; on failure it
    /// stays, so the client may retry or abort.
    pub(crate) fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        conditions: &Conditions,
    ) -> Result<Object, Failure> {
        let mut state = self.state.lock();
        state.bucket(bucket)?;
        let upload = Self::upload_mut(&mut state, bucket, key, upload_id)?;
        if parts.is_empty() || parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(Failure::InvalidPartOrder);
        }
        let mut chosen = Vec::with_capacity(parts.len());
        for (part_number, etag) in parts {
            match upload.parts.get(part_number) {
                Some(part) if part.etag == *etag => chosen.push(part.data.clone()),
                _ => return Err(Failure::InvalidPart),
            }
        }
        if chosen[..chosen.len() - 1]
            .iter()
            .any(|data| data.len() < MIN_PART_SIZE_BYTES)
        {
            return Err(Failure::EntityTooSmall);
        }
        check_write(state.bucket(bucket)?.get(key), conditions)?;
        let mut data = Vec::with_capacity(chosen.iter().map(Bytes::len).sum());
        for part in &chosen {
            data.extend_from_slice(part);
        }
        let data = Bytes::from(data);
        let object = Object {
            etag: state.next_etag(&data, &format!("-{}", parts.len())),
            generation: state.n_writes,
            data,
            last_modified: SystemTime::now(),
        };
        state.uploads.remove(upload_id);
        state
            .bucket_mut(bucket)?
            .insert(key.to_owned(), object.clone());
        Ok(object)
    }

    /// Drops an upload and its parts.
    pub(crate) fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), Failure> {
        let mut state = self.state.lock();
        Self::upload_mut(&mut state, bucket, key, upload_id)?;
        state.uploads.remove(upload_id);
        Ok(())
    }

    /// The number of multipart uploads begun and neither completed nor aborted.
    pub(crate) fn n_open_uploads(&self) -> usize {
        self.state.lock().uploads.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(keys: &[&str]) -> Store {
        let store = Store::default();
        store.create_bucket("b").unwrap();
        for key in keys {
            store
                .put("b", key, Bytes::from_static(b"x"), &Conditions::default())
                .unwrap();
        }
        store
    }

    fn if_none_match_any() -> Conditions {
        Conditions {
            if_none_match: Some(EtagCondition::Any),
            ..Conditions::default()
        }
    }

    fn if_match(tag: &str) -> Conditions {
        Conditions {
            if_match: Some(EtagCondition::Tag(tag.to_owned())),
            ..Conditions::default()
        }
    }

    /// Lists everything page by page, as a client does, and names each entry.
    fn list_all(
        store: &Store,
        prefix: &str,
        delimiter: Option<&str>,
        max_keys: usize,
    ) -> Vec<String> {
        let mut query = ListQuery {
            prefix: prefix.to_owned(),
            delimiter: delimiter.map(str::to_owned),
            after: None,
            max_keys,
        };
        let mut names = Vec::new();
        loop {
            let page = store.list("b", &query).unwrap();
            assert!(page.entries.len() <= max_keys);
            for entry in page.entries {
                names.push(match entry {
                    ListEntry::Object { key, .. } => key,
                    ListEntry::CommonPrefix(cp) => format!("{cp}*"),
                });
            }
            match page.next_after {
                Some(after) => query.after = Some(after),
                None => return names,
            }
        }
    }

    #[test]
    fn etags_differ_for_equal_content() {
        let store = store_with(&[]);
        let a = store.put(
            "b",
            "k",
            Bytes::from_static(b"same"),
            &Conditions::default(),
        );
        let b = store.put(
            "b",
            "k",
            Bytes::from_static(b"same"),
            &Conditions::default(),
        );
        assert_ne!(a.unwrap().etag, b.unwrap().etag);
    }

    #[test]
    fn create_only_if_absent() {
        let store = store_with(&[]);
        assert!(store
            .put("b", "k", Bytes::new(), &if_none_match_any())
            .is_ok());
        assert_eq!(
            store
                .put("b", "k", Bytes::new(), &if_none_match_any())
                .unwrap_err(),
            Failure::PreconditionFailed
        );
    }

    #[test]
    fn replace_only_the_named_version() {
        let store = store_with(&[]);
        assert_eq!(
            store
                .put("b", "k", Bytes::new(), &if_match("nope"))
                .unwrap_err(),
            Failure::PreconditionFailed,
            "If-Match on a missing key fails"
        );
        let v1 = store
            .put("b", "k", Bytes::new(), &Conditions::default())
            .unwrap();
        let v2 = store
            .put("b", "k", Bytes::new(), &if_match(&v1.etag))
            .unwrap();
        assert_eq!(
            store
                .put("b", "k", Bytes::new(), &if_match(&v1.etag))
                .unwrap_err(),
            Failure::PreconditionFailed,
            "a stale ETag fails"
        );
        assert!(store
            .put("b", "k", Bytes::new(), &if_match(&v2.etag))
            .is_ok());
    }

    fn if_generation(generation: u64) -> Conditions {
        Conditions {
            if_generation_match: Some(generation),
            ..Conditions::default()
        }
    }

    /// Google Cloud Storage's preconditions: generation 0 creates only if
    /// absent, generation N replaces only version N; generations increase.
    #[test]
    fn replace_only_the_named_generation() {
        let store = store_with(&[]);
        let v1 = store
            .put("b", "k", Bytes::new(), &if_generation(0))
            .unwrap();
        assert_eq!(
            store
                .put("b", "k", Bytes::new(), &if_generation(0))
                .unwrap_err(),
            Failure::PreconditionFailed,
            "generation 0 on an existing key fails"
        );
        assert_eq!(
            store
                .put("b", "missing", Bytes::new(), &if_generation(v1.generation))
                .unwrap_err(),
            Failure::PreconditionFailed,
            "a generation on a missing key fails"
        );
        let v2 = store
            .put("b", "k", Bytes::new(), &if_generation(v1.generation))
            .unwrap();
        assert!(v2.generation > v1.generation);
        assert_eq!(
            store
                .put("b", "k", Bytes::new(), &if_generation(v1.generation))
                .unwrap_err(),
            Failure::PreconditionFailed,
            "a stale generation fails"
        );
        assert_eq!(
            store
                .get("b", "k", &if_generation(v1.generation))
                .unwrap_err(),
            Failure::PreconditionFailed
        );
        assert_eq!(
            store
                .get("b", "k", &if_generation(v2.generation))
                .unwrap()
                .etag,
            v2.etag
        );
    }

    #[test]
    fn reads_honour_conditions() {
        let store = store_with(&["k"]);
        let current = store.get("b", "k", &Conditions::default()).unwrap();
        assert_eq!(
            store.get("b", "k", &if_match("old")).unwrap_err(),
            Failure::PreconditionFailed
        );
        assert!(store.get("b", "k", &if_match(&current.etag)).is_ok());
        let unchanged = Conditions {
            if_none_match: Some(EtagCondition::Tag(current.etag)),
            ..Conditions::default()
        };
        assert_eq!(
            store.get("b", "k", &unchanged).unwrap_err(),
            Failure::NotModified
        );
        assert_eq!(
            store.get("b", "gone", &Conditions::default()).unwrap_err(),
            Failure::NoSuchKey
        );
    }

    #[test]
    fn list_pages_cover_every_key_once() {
        let keys: Vec<String> = (0..25).map(|i| format!("k{i:03}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let store = store_with(&refs);
        for max_keys in [1, 7, 25, 1000] {
            assert_eq!(list_all(&store, "", None, max_keys), keys);
        }
    }

    #[test]
    fn list_rolls_up_common_prefixes_across_pages() {
        let store = store_with(&["a/1", "a/2", "a/3", "a0", "b", "c/x/y", "c/z", "d"]);
        for max_keys in [1, 2, 3, 1000] {
            assert_eq!(
                list_all(&store, "", Some("/"), max_keys),
                ["a/*", "a0", "b", "c/*", "d"],
                "max_keys {max_keys}"
            );
            assert_eq!(
                list_all(&store, "c/", Some("/"), max_keys),
                ["c/x/*", "c/z"]
            );
            assert_eq!(
                list_all(&store, "a", None, max_keys),
                ["a/1", "a/2", "a/3", "a0"]
            );
        }
    }

    /// The listing a plain scan gives: what `list` must equal, page by page joined.
    fn model_list(keys: &[String], prefix: &str, delimiter: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for key in keys.iter().filter(|key| key.starts_with(prefix)) {
            let rest = &key[prefix.len()..];
            let name = match delimiter.and_then(|d| rest.find(d).map(|idx| (d, idx))) {
                Some((d, idx)) => format!("{}*", &key[..prefix.len() + idx + d.len()]),
                None => key.clone(),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Random key sets over a small alphabet (so prefixes and delimiters collide
    /// often), listed with every prefix, delimiter and page size, against the model.
    #[test]
    fn list_matches_a_plain_scan() {
        let alphabet = ['a', 'b', '/', '-'];
        let mut seed: u64 = 0x5eed;
        let mut next = move |bound: usize| {
            // xorshift64*: deterministic, so a failure replays.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
        };
        for round in 0..40 {
            let mut keys: Vec<String> = (0..=next(30))
                .map(|_| (0..=next(5)).map(|_| alphabet[next(4)]).collect())
                .collect();
            keys.sort();
            keys.dedup();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let store = store_with(&refs);
            for prefix in ["", "a", "a/", "b-", "/"] {
                for delimiter in [None, Some("/"), Some("-"), Some("a/")] {
                    let expected = model_list(&keys, prefix, delimiter);
                    for max_keys in [1, 2, 3, 1000] {
                        assert_eq!(
                            list_all(&store, prefix, delimiter, max_keys),
                            expected,
                            "round {round}, keys {keys:?}, prefix {prefix:?}, \
                             delimiter {delimiter:?}, max_keys {max_keys}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn multipart_publishes_only_on_complete() {
        let store = store_with(&[]);
        let id = store.create_multipart("b", "big").unwrap();
        let big = Bytes::from(vec![1u8; MIN_PART_SIZE_BYTES]);
        let e1 = store.upload_part("b", "big", &id, 1, big.clone()).unwrap();
        let e2 = store
            .upload_part("b", "big", &id, 2, Bytes::from_static(b"tail"))
            .unwrap();
        assert!(store.keys("b").is_empty(), "parts are not visible");
        assert_eq!(
            store
                .complete_multipart(
                    "b",
                    "big",
                    &id,
                    &[(1, "bad".into())],
                    &Conditions::default()
                )
                .unwrap_err(),
            Failure::InvalidPart
        );
        let object = store
            .complete_multipart("b", "big", &id, &[(1, e1), (2, e2)], &if_none_match_any())
            .unwrap();
        assert_eq!(object.data.len(), MIN_PART_SIZE_BYTES + 4);
        assert!(object.etag.ends_with("-2"));
        assert_eq!(store.n_open_uploads(), 0);
        assert_eq!(
            store.abort_multipart("b", "big", &id).unwrap_err(),
            Failure::NoSuchUpload
        );
    }

    #[test]
    fn multipart_rejects_small_middle_parts_and_failed_conditions() {
        let store = store_with(&["taken"]);
        let id = store.create_multipart("b", "taken").unwrap();
        let e1 = store
            .upload_part("b", "taken", &id, 1, Bytes::from_static(b"small"))
            .unwrap();
        let e2 = store
            .upload_part("b", "taken", &id, 2, Bytes::from_static(b"tail"))
            .unwrap();
        let parts = [(1, e1.clone()), (2, e2)];
        assert_eq!(
            store
                .complete_multipart("b", "taken", &id, &parts, &Conditions::default())
                .unwrap_err(),
            Failure::EntityTooSmall
        );
        assert_eq!(
            store
                .complete_multipart("b", "taken", &id, &[(1, e1)], &if_none_match_any())
                .unwrap_err(),
            Failure::PreconditionFailed
        );
        assert_eq!(
            store.n_open_uploads(),
            1,
            "a failed complete keeps the upload"
        );
        store.abort_multipart("b", "taken", &id).unwrap();
        assert_eq!(store.n_open_uploads(), 0);
    }
}
