//! The Google Cloud Storage XML API over the same in-memory store: the requests
//! `object_store`'s GCS client makes (get with ranges, head, put, delete, list v2
//! with prefix, delimiter and pagination, multipart uploads), answered with GCS's
//! headers (`x-goog-generation`, quoted `ETag`, `Last-Modified`) and GCS's rules:
//! a write with `x-goog-if-generation-match: 0` creates only if absent, one with
//! `x-goog-if-generation-match: N` replaces only generation `N`, and a failed
//! precondition is `412`; deleting a missing object is `404`.
//!
//! Requests carry `Authorization: Bearer <token>` and must name
//! [`BEARER_TOKEN`](crate::BEARER_TOKEN) (`401` otherwise), so a client that
//! lost its credentials fails as it would against the service.
//!
//! **Invariant:** every conditional write goes through [`Store`], which checks
//! and writes under one lock, so the race oracle holds for this protocol too.
//! What this module adds is translation only: parsing a request, formatting an
//! answer.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{header, HeaderMap, Response, StatusCode};

use crate::fault::OpKind;
use crate::route::{percent_decode, Target};
use crate::store::{
    Conditions, EtagCondition, Failure, ListEntry, ListQuery, Object, Store, MAX_KEYS_PER_PAGE,
};
use crate::BEARER_TOKEN;

const GENERATION: &str = "x-goog-generation";
const IF_GENERATION_MATCH: &str = "x-goog-if-generation-match";

/// Answers one GCS XML API request against `store`.
pub(crate) fn answer(
    store: &Store,
    target: &Target,
    parts: &Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let authorized = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {BEARER_TOKEN}"));
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "a valid bearer token is required",
        );
    }
    let query = parts.uri.query().unwrap_or("");
    let result = match target.op {
        OpKind::Get | OpKind::Head => read(store, target, &parts.headers, query),
        OpKind::Put => put(store, target, &parts.headers, body),
        OpKind::Delete if !target.key.is_empty() => delete(store, target),
        OpKind::List => list(store, &target.bucket, query),
        OpKind::CreateMultipart => create_multipart(store, target),
        OpKind::UploadPart => upload_part(store, target, query, body),
        OpKind::CompleteMultipart => complete(store, target, &parts.headers, query, &body),
        OpKind::AbortMultipart => param(query, "uploadId")
            .ok_or(Reply::BadRequest("uploadId missing"))
            .and_then(|id| Ok(store.abort_multipart(&target.bucket, &target.key, &id)?))
            .map(|()| empty(StatusCode::NO_CONTENT)),
        _ => Err(Reply::NotImplemented),
    };
    result.unwrap_or_else(Reply::into_response)
}

/// Why a request was refused, before it becomes an error answer.
enum Reply {
    Store(Failure),
    BadRequest(&'static str),
    RangeNotSatisfiable(u64),
    NotImplemented,
}

impl From<Failure> for Reply {
    fn from(failure: Failure) -> Reply {
        Reply::Store(failure)
    }
}

impl Reply {
    fn into_response(self) -> Response<Full<Bytes>> {
        match self {
            Reply::Store(failure) => {
                let (status, code) = match failure {
                    Failure::NoSuchBucket => (StatusCode::NOT_FOUND, "NoSuchBucket"),
                    Failure::NoSuchKey => (StatusCode::NOT_FOUND, "NoSuchKey"),
                    Failure::PreconditionFailed => {
                        (StatusCode::PRECONDITION_FAILED, "PreconditionFailed")
                    }
                    Failure::NotModified => (StatusCode::NOT_MODIFIED, "NotModified"),
                    Failure::NoSuchUpload => (StatusCode::NOT_FOUND, "NoSuchUpload"),
                    Failure::InvalidPart => (StatusCode::BAD_REQUEST, "InvalidPart"),
                    Failure::InvalidPartOrder => (StatusCode::BAD_REQUEST, "InvalidPartOrder"),
                    Failure::EntityTooSmall => (StatusCode::BAD_REQUEST, "EntityTooSmall"),
                    Failure::BucketAlreadyOwnedByYou => {
                        (StatusCode::CONFLICT, "BucketAlreadyOwnedByYou")
                    }
                };
                if status == StatusCode::NOT_MODIFIED {
                    return empty(status);
                }
                error(status, code, "the store refused the request")
            }
            Reply::BadRequest(why) => error(StatusCode::BAD_REQUEST, "InvalidArgument", why),
            Reply::RangeNotSatisfiable(size) => {
                let mut response = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "the requested range cannot be satisfied",
                );
                insert(
                    &mut response,
                    header::CONTENT_RANGE,
                    &format!("bytes */{size}"),
                );
                response
            }
            Reply::NotImplemented => error(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "this test server does not implement the request",
            ),
        }
    }
}

/// `x-goog-if-generation-match`, `If-Match` and `If-None-Match` of a request.
fn conditions(headers: &HeaderMap) -> Result<Conditions, Reply> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let etag = |name: &str| {
        text(name).map(|v| match v.trim() {
            "*" => EtagCondition::Any,
            tag => EtagCondition::Tag(tag.trim_matches('"').to_owned()),
        })
    };
    let if_generation_match = match text(IF_GENERATION_MATCH) {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| Reply::BadRequest("x-goog-if-generation-match is not a number"))?,
        ),
    };
    Ok(Conditions {
        if_match: etag("if-match"),
        if_none_match: etag("if-none-match"),
        if_generation_match,
    })
}

/// `GET` or `HEAD` of an object, whole or one range.
fn read(
    store: &Store,
    target: &Target,
    headers: &HeaderMap,
    query: &str,
) -> Result<Response<Full<Bytes>>, Reply> {
    let object = store.get(&target.bucket, &target.key, &conditions(headers)?)?;
    // A read of one generation: this store keeps only the current one.
    if let Some(generation) = param(query, "generation") {
        if generation.parse::<u64>().ok() != Some(object.generation) {
            return Err(Failure::NoSuchKey.into());
        }
    }
    let size = object.data.len() as u64;
    let (status, data, range) = match target.range {
        None => (StatusCode::OK, object.data.clone(), None),
        Some(range) => {
            let span = range
                .check(size)
                .map_err(|_| Reply::RangeNotSatisfiable(size))?;
            let (start, end) = (
                usize::try_from(span.start).expect("in memory"),
                usize::try_from(span.end).expect("in memory"),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                object.data.slice(start..end),
                Some((span.start, span.end)),
            )
        }
    };
    let head = target.op == OpKind::Head;
    let len = data.len();
    let mut response = if head {
        empty(status)
    } else {
        Response::new(Full::new(data))
    };
    *response.status_mut() = status;
    object_headers(&mut response, &object);
    insert(&mut response, header::CONTENT_LENGTH, &len.to_string());
    insert(
        &mut response,
        "x-goog-stored-content-length",
        &size.to_string(),
    );
    insert(
        &mut response,
        header::CONTENT_TYPE,
        "application/octet-stream",
    );
    if let Some((start, end)) = range {
        insert(
            &mut response,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    Ok(response)
}

fn put(
    store: &Store,
    target: &Target,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Reply> {
    if headers.contains_key("x-goog-copy-source") {
        return Err(Reply::NotImplemented);
    }
    let object = store.put(&target.bucket, &target.key, body, &conditions(headers)?)?;
    let mut response = empty(StatusCode::OK);
    object_headers(&mut response, &object);
    Ok(response)
}

fn delete(store: &Store, target: &Target) -> Result<Response<Full<Bytes>>, Reply> {
    // GCS, unlike S3, answers 404 for a missing object.
    store.get(&target.bucket, &target.key, &Conditions::default())?;
    store.delete(&target.bucket, &target.key)?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /bucket?list-type=2&prefix=…&delimiter=…&continuation-token=…`.
fn list(store: &Store, bucket: &str, query: &str) -> Result<Response<Full<Bytes>>, Reply> {
    let prefix = param(query, "prefix").unwrap_or_default();
    let delimiter = param(query, "delimiter").filter(|d| !d.is_empty());
    let after = match param(query, "continuation-token") {
        Some(token) => Some(unhex(&token).ok_or(Reply::BadRequest("bad continuation-token"))?),
        None => param(query, "start-after"),
    };
    let max_keys = match param(query, "max-keys") {
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| Reply::BadRequest("max-keys is not a number"))?
            .clamp(1, MAX_KEYS_PER_PAGE),
        None => MAX_KEYS_PER_PAGE,
    };
    let page = store.list(
        bucket,
        &ListQuery {
            prefix: prefix.clone(),
            delimiter: delimiter.clone(),
            after,
            max_keys,
        },
    )?;
    let mut xml = String::from("<?xml version='1.0' encoding='UTF-8'?>");
    xml.push_str("<ListBucketResult xmlns=\"http://doc.s3.amazonaws.com/2006-03-01\">");
    let _ = write!(
        xml,
        "<Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{}</IsTruncated>",
        escape(bucket),
        escape(&prefix),
        page.entries.len(),
        page.next_after.is_some(),
    );
    if let Some(d) = &delimiter {
        let _ = write!(xml, "<Delimiter>{}</Delimiter>", escape(d));
    }
    for entry in &page.entries {
        match entry {
            ListEntry::Object { key, object } => {
                let _ = write!(
                    xml,
                    "<Contents><Key>{}</Key><Generation>{}</Generation><MetaGeneration>1</MetaGeneration><LastModified>{}</LastModified><ETag>\"{}\"</ETag><Size>{}</Size></Contents>",
                    escape(key),
                    object.generation,
                    rfc3339(object.last_modified),
                    object.etag,
                    object.data.len(),
                );
            }
            ListEntry::CommonPrefix(cp) => {
                let _ = write!(
                    xml,
                    "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                    escape(cp)
                );
            }
        }
    }
    if let Some(next) = &page.next_after {
        let _ = write!(
            xml,
            "<NextContinuationToken>{}</NextContinuationToken>",
            hex(next)
        );
    }
    xml.push_str("</ListBucketResult>");
    Ok(xml_response(StatusCode::OK, xml))
}

fn create_multipart(store: &Store, target: &Target) -> Result<Response<Full<Bytes>>, Reply> {
    let upload_id = store.create_multipart(&target.bucket, &target.key)?;
    let xml = format!(
        "<?xml version='1.0' encoding='UTF-8'?><InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
        escape(&target.bucket),
        escape(&target.key),
        escape(&upload_id),
    );
    Ok(xml_response(StatusCode::OK, xml))
}

fn upload_part(
    store: &Store,
    target: &Target,
    query: &str,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Reply> {
    let upload_id = param(query, "uploadId").ok_or(Reply::BadRequest("uploadId missing"))?;
    let part_number = param(query, "partNumber")
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|n| (1..=10_000).contains(n))
        .ok_or(Reply::BadRequest("partNumber must be 1 to 10000"))?;
    let etag = store.upload_part(&target.bucket, &target.key, &upload_id, part_number, body)?;
    let mut response = empty(StatusCode::OK);
    insert(&mut response, header::ETAG, &format!("\"{etag}\""));
    Ok(response)
}

fn complete(
    store: &Store,
    target: &Target,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Reply> {
    let upload_id = param(query, "uploadId").ok_or(Reply::BadRequest("uploadId missing"))?;
    let parts = completed_parts(body).ok_or(Reply::BadRequest("malformed part list"))?;
    let object = store.complete_multipart(
        &target.bucket,
        &target.key,
        &upload_id,
        &parts,
        &conditions(headers)?,
    )?;
    let xml = format!(
        "<?xml version='1.0' encoding='UTF-8'?><CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>/{}/{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>\"{}\"</ETag></CompleteMultipartUploadResult>",
        escape(&target.bucket),
        escape(&target.key),
        escape(&target.bucket),
        escape(&target.key),
        object.etag,
    );
    let mut response = xml_response(StatusCode::OK, xml);
    insert(&mut response, GENERATION, &object.generation.to_string());
    Ok(response)
}

/// The `(PartNumber, ETag)` pairs of a `CompleteMultipartUpload` body, in order.
fn completed_parts(body: &[u8]) -> Option<Vec<(i32, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut parts = Vec::new();
    for part in text.split("<Part>").skip(1) {
        let number = element(part, "PartNumber")?.trim().parse().ok()?;
        let etag = unescape(element(part, "ETag")?.trim())
            .trim_matches('"')
            .to_owned();
        parts.push((number, etag));
    }
    Some(parts)
}

/// The text of the first `<name>…</name>` in `xml`.
fn element<'x>(xml: &'x str, name: &str) -> Option<&'x str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..end])
}

/// The headers every object answer carries: `ETag`, `Last-Modified`, the generation.
fn object_headers(response: &mut Response<Full<Bytes>>, object: &Object) {
    insert(response, header::ETAG, &format!("\"{}\"", object.etag));
    insert(
        response,
        header::LAST_MODIFIED,
        &http_date(object.last_modified),
    );
    insert(response, GENERATION, &object.generation.to_string());
    insert(response, "x-goog-metageneration", "1");
}

fn insert<K: header::IntoHeaderName>(response: &mut Response<Full<Bytes>>, name: K, value: &str) {
    response.headers_mut().insert(
        name,
        header::HeaderValue::from_str(value).expect("header values are ASCII"),
    );
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn xml_response(status: StatusCode, xml: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    *response.status_mut() = status;
    insert(&mut response, header::CONTENT_TYPE, "application/xml");
    response
}

/// A GCS XML error answer.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    xml_response(
        status,
        format!(
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{}</Message></Error>",
            escape(message)
        ),
    )
}

/// The decoded value of query parameter `name` (`+` is a space, as in forms).
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

/// XML's five entities, `&` first: escaping replaces in this order,
/// unescaping in the reverse (so `&amp;lt;` stays `&lt;`).
const ENTITIES: [(&str, &str); 5] = [
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ("\"", "&quot;"),
    ("'", "&apos;"),
];

fn escape(text: &str) -> String {
    ENTITIES
        .iter()
        .fold(text.to_owned(), |t, (raw, entity)| t.replace(raw, entity))
}

fn unescape(text: &str) -> String {
    ENTITIES
        .iter()
        .rev()
        .fold(text.to_owned(), |t, (raw, entity)| t.replace(entity, raw))
}

/// Continuation tokens are opaque: the marker's bytes in hex.
fn hex(text: &str) -> String {
    text.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// A UTC date and time, to the millisecond.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    milli: u32,
    /// 0 = Sunday.
    weekday: u32,
}

impl Civil {
    fn of(time: SystemTime) -> Civil {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let days = i64::try_from(secs / 86_400).expect("dates before year 2^63");
        let rem = secs % 86_400;
        let (year, month, day) = array_format::civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: rem / 3_600,
            minute: rem % 3_600 / 60,
            second: rem % 60,
            milli: since.subsec_millis(),
            // 1970-01-01 was a Thursday.
            weekday: u32::try_from((days + 4).rem_euclid(7)).expect("0..7"),
        }
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = Civil::of(time);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday as usize],
        c.day,
        MONTHS[c.month as usize - 1],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// `1994-11-06T08:49:37.000Z`.
fn rfc3339(time: SystemTime) -> String {
    let c = Civil::of(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_format_as_http_and_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(784_111_777_123);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(rfc3339(t), "1994-11-06T08:49:37.123Z");
        let leap = UNIX_EPOCH + Duration::from_hours(264_384);
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn tokens_and_parameters_round_trip() {
        for marker in ["", "a/b c", "ü/x&y"] {
            assert_eq!(unhex(&hex(marker)).as_deref(), Some(marker));
        }
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
        let q = "list-type=2&prefix=a%2Fb+c&delimiter=%2F&uploads";
        assert_eq!(param(q, "prefix").as_deref(), Some("a/b c"));
        assert_eq!(param(q, "delimiter").as_deref(), Some("/"));
        assert_eq!(param(q, "uploads").as_deref(), Some(""));
        assert_eq!(param(q, "max-keys"), None);
    }

    #[test]
    fn completed_parts_are_read_in_order() {
        let body = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a1\"</ETag></Part><Part><ETag>&quot;b2&quot;</ETag><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>";
        assert_eq!(
            completed_parts(body),
            Some(vec![(1, "a1".to_owned()), (2, "b2".to_owned())])
        );
        assert_eq!(
            completed_parts(b"<Part><PartNumber>x</PartNumber></Part>"),
            None
        );
    }
}
