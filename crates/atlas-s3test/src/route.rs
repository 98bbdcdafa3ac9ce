//! Naming a request before `s3s` sees it: which operation, bucket, key and range, as
//! the request log and the fault queue need them.
//!
//! **Invariant:** this module only reads the request line and headers; it never
//! touches the body, so classifying a request cannot change what the backend sees.

use hyper::{header, Method, Request};
use s3s::dto::Range;

use crate::fault::OpKind;

/// What the log and the faults know of a request before it is handled.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) op: OpKind,
    pub(crate) bucket: String,
    pub(crate) key: String,
    /// The parsed `Range` header, if any.
    pub(crate) range: Option<Range>,
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
pub(crate) fn percent_decode(src: &str) -> String {
    let bytes = src.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        if bytes[idx] == b'%' && idx + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[idx + 1..idx + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                idx += 3;
                continue;
            }
        }
        out.push(bytes[idx]);
        idx += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the query string has parameter `name` (with or without a value).
fn has_param(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(name))
}

impl Target {
    /// Names a path-style request `/bucket/key?query`.
    pub(crate) fn of<B>(req: &Request<B>) -> Target {
        let path = req.uri().path().trim_start_matches('/');
        let (bucket, key) = match path.split_once('/') {
            Some((bucket, key)) => (percent_decode(bucket), percent_decode(key)),
            None => (percent_decode(path), String::new()),
        };
        let query = req.uri().query().unwrap_or("");
        let has_key = !key.is_empty();
        let op = match *req.method() {
            Method::GET if has_key => OpKind::Get,
            Method::GET if !bucket.is_empty() && !has_param(query, "uploads") => {
                if [
                    "acl",
                    "policy",
                    "location",
                    "versioning",
                    "tagging",
                    "versions",
                ]
                .iter()
                .any(|name| has_param(query, name))
                {
                    OpKind::Other
                } else {
                    OpKind::List
                }
            }
            Method::HEAD if has_key => OpKind::Head,
            Method::PUT if has_key && has_param(query, "uploadId") => OpKind::UploadPart,
            Method::PUT
                if has_key
                    && !req.headers().contains_key("x-amz-copy-source")
                    && !req.headers().contains_key("x-goog-copy-source") =>
            {
                if has_param(query, "tagging") || has_param(query, "acl") {
                    OpKind::Other
                } else {
                    OpKind::Put
                }
            }
            Method::DELETE if has_key && has_param(query, "uploadId") => OpKind::AbortMultipart,
            Method::DELETE if has_key => OpKind::Delete,
            Method::POST if has_key && has_param(query, "uploads") => OpKind::CreateMultipart,
            Method::POST if has_key && has_param(query, "uploadId") => OpKind::CompleteMultipart,
            Method::POST if !has_key && has_param(query, "delete") => OpKind::Delete,
            _ => OpKind::Other,
        };
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Range::parse(value).ok());
        Target {
            op,
            bucket,
            key,
            range,
        }
    }

    /// Whether this is a `DeleteObjects` request, whose keys are in the body.
    pub(crate) fn is_bulk_delete(&self) -> bool {
        self.op == OpKind::Delete && self.key.is_empty()
    }

    /// The logged range: the span the response's `Content-Range` names if it has one,
    /// else the header's span resolved against `size` (the object's size, if it exists).
    pub(crate) fn logged_range(
        &self,
        content_range: Option<&str>,
        size: Option<u64>,
    ) -> Option<(u64, u64)> {
        let range = self.range?;
        if let Some(span) = content_range.and_then(parse_content_range) {
            return Some(span);
        }
        if let Some(span) = size.and_then(|size| range.check(size).ok()) {
            return Some((span.start, span.end));
        }
        match range {
            Range::Int {
                first,
                last: Some(last),
            } => Some((first, last.saturating_add(1))),
            _ => None,
        }
    }
}

/// The keys a `DeleteObjects` body names, joined by newlines (the log's `key` for
/// such a request). A plain scan for `<Key>` elements; entities are decoded.
pub(crate) fn bulk_delete_keys(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut keys = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("<Key>") {
        rest = &rest[start + "<Key>".len()..];
        let Some(end) = rest.find("</Key>") else {
            break;
        };
        keys.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end..];
    }
    keys.join("\n")
}

/// Parses `bytes FIRST-LAST/TOTAL` into `(FIRST, LAST + 1)`.
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let span = value.strip_prefix("bytes ")?.split('/').next()?;
    let (first, last) = span.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    Some((first, last.checked_add(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: Method, uri: &str) -> Target {
        Target::of(&Request::builder().method(method).uri(uri).body(()).unwrap())
    }

    #[test]
    fn names_operations() {
        let cases = [
            (Method::GET, "/b/k", OpKind::Get),
            (Method::GET, "/b?list-type=2&prefix=a", OpKind::List),
            (Method::GET, "/b", OpKind::List),
            (Method::HEAD, "/b/k", OpKind::Head),
            (Method::PUT, "/b/k", OpKind::Put),
            (
                Method::PUT,
                "/b/k?partNumber=1&uploadId=u",
                OpKind::UploadPart,
            ),
            (Method::DELETE, "/b/k", OpKind::Delete),
            (Method::DELETE, "/b/k?uploadId=u", OpKind::AbortMultipart),
            (Method::POST, "/b/k?uploads", OpKind::CreateMultipart),
            (Method::POST, "/b/k?uploadId=u", OpKind::CompleteMultipart),
            (Method::POST, "/b?delete", OpKind::Delete),
            (Method::PUT, "/b", OpKind::Other),
            (Method::GET, "/", OpKind::Other),
        ];
        for (method, uri, op) in cases {
            assert_eq!(target(method.clone(), uri).op, op, "{method} {uri}");
        }
    }

    #[test]
    fn decodes_keys() {
        let t = target(Method::GET, "/bucket/dir/a%20b%2Fc%zz");
        assert_eq!(t.bucket, "bucket");
        assert_eq!(t.key, "dir/a b/c%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("x%41"), "xA");
    }

    #[test]
    fn names_the_keys_of_a_bulk_delete() {
        let body =
            b"<Delete><Object><Key>a/1</Key></Object><Object><Key>b&amp;c</Key></Object></Delete>";
        assert_eq!(bulk_delete_keys(body), "a/1\nb&c");
        assert_eq!(bulk_delete_keys(b"<Delete></Delete>"), "");
    }

    #[test]
    fn resolves_ranges() {
        let req = |range: &str| {
            Target::of(
                &Request::builder()
                    .uri("/b/k")
                    .header(header::RANGE, range)
                    .body(())
                    .unwrap(),
            )
        };
        assert_eq!(req("bytes=2-5").logged_range(None, None), Some((2, 6)));
        assert_eq!(req("bytes=-4").logged_range(None, Some(10)), Some((6, 10)));
        assert_eq!(req("bytes=-4").logged_range(None, None), None);
        assert_eq!(
            req("bytes=3-").logged_range(Some("bytes 3-9/10"), None),
            Some((3, 10))
        );
        assert_eq!(
            target(Method::GET, "/b/k").logged_range(None, Some(10)),
            None
        );
    }
}
