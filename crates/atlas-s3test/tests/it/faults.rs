//! Injected faults as the `object_store` client sees them, with retries off and with
//! the default retry policy; the request log; latency.

use std::time::{Duration, Instant};

use atlas_s3test::{Fault, FaultAction, OpKind};
use object_store::{
    MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use crate::{client, count, path, server, Retries, BUCKET};

/// The statuses of the logged requests of kind `op`, in order.
fn statuses(server: &atlas_s3test::S3Server, op: OpKind) -> Vec<u16> {
    server
        .requests()
        .iter()
        .filter(|r| r.op == op)
        .map(|r| r.status)
        .collect()
}

#[tokio::test]
async fn fail_without_retries_is_an_error_and_nothing_is_applied() {
    let server = server();
    let store = client(&server, Retries::None);
    server.inject(Fault::once(OpKind::Put, FaultAction::Fail));
    let result = store.put(&path("k"), PutPayload::from_static(b"v")).await;
    assert!(
        matches!(result, Err(object_store::Error::Generic { .. })),
        "{result:?}"
    );
    assert!(server.object(BUCKET, "k").is_none());
    assert_eq!(statuses(&server, OpKind::Put), [503]);
    // The fault is used up.
    store
        .put(&path("k"), PutPayload::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(statuses(&server, OpKind::Put), [503, 200]);
}

#[tokio::test]
async fn fail_with_default_retries_is_retried_and_succeeds() {
    let server = server();
    let store = client(&server, Retries::Default);
    server.inject(Fault::once(OpKind::Get, FaultAction::Fail).times(3));
    server.put_object_direct(BUCKET, "k", b"v".to_vec());
    let got = store.get(&path("k")).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, &b"v"[..]);
    assert_eq!(statuses(&server, OpKind::Get), [503, 503, 503, 200]);
}

#[tokio::test]
async fn faults_match_by_key_and_any_operation() {
    let server = server();
    let store = client(&server, Retries::None);
    server.inject(Fault {
        op: None,
        key_contains: Some("manifest".into()),
        action: FaultAction::Fail,
        times: 2,
    });
    store
        .put(&path("data/1"), PutPayload::from_static(b"d"))
        .await
        .unwrap();
    assert!(store
        .put(&path("a/manifest"), PutPayload::from_static(b"m"))
        .await
        .is_err());
    assert!(store.head(&path("a/manifest")).await.is_err());
    store
        .put(&path("a/manifest"), PutPayload::from_static(b"m"))
        .await
        .unwrap();
    let log: Vec<_> = server.requests().iter().map(|r| (r.op, r.status)).collect();
    assert_eq!(
        log,
        [
            (OpKind::Put, 200),
            (OpKind::Put, 503),
            (OpKind::Head, 503),
            (OpKind::Put, 200)
        ]
    );
}

#[tokio::test]
async fn delete_faults_match_the_keys_of_the_batch() {
    let server = server();
    let store = client(&server, Retries::None);
    for key in ["data/1", "data/2", "gen/manifest"] {
        server.put_object_direct(BUCKET, key, vec![1]);
    }
    server.inject(Fault::once(OpKind::Delete, FaultAction::Fail).on_keys_containing("manifest"));
    store.delete(&path("data/1")).await.unwrap();
    assert!(store.delete(&path("gen/manifest")).await.is_err());
    assert_eq!(server.keys(BUCKET), ["data/2", "gen/manifest"]);
    let log: Vec<_> = server
        .requests()
        .iter()
        .map(|r| (r.op, r.key.clone(), r.status))
        .collect();
    assert_eq!(
        log,
        [
            (OpKind::Delete, "data/1".to_owned(), 200),
            (OpKind::Delete, "gen/manifest".to_owned(), 503)
        ]
    );
}

#[tokio::test]
async fn clear_faults_drops_the_queue() {
    let server = server();
    let store = client(&server, Retries::None);
    server.inject(Fault::once(OpKind::Put, FaultAction::Fail).times(100));
    server.clear_faults();
    store
        .put(&path("k"), PutPayload::from_static(b"v"))
        .await
        .unwrap();
}

#[tokio::test]
async fn delay_holds_the_answer_back() {
    let server = server();
    let store = client(&server, Retries::None);
    server.put_object_direct(BUCKET, "k", b"v".to_vec());
    server.inject(Fault::once(
        OpKind::Head,
        FaultAction::Delay(Duration::from_millis(300)),
    ));
    let started = Instant::now();
    store.head(&path("k")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(statuses(&server, OpKind::Head), [200]);
}

/// Without retries the client sees an error although the write landed: the
/// lost-response case a commit protocol must handle by reading back.
#[tokio::test]
async fn drop_response_without_retries_applies_but_reports_an_error() {
    let server = server();
    let store = client(&server, Retries::None);
    server.inject(Fault::once(OpKind::Put, FaultAction::DropResponse));
    let result = store
        .put_opts(
            &path("manifest"),
            PutPayload::from_static(b"mine"),
            PutOptions::from(PutMode::Create),
        )
        .await;
    assert!(
        matches!(result, Err(object_store::Error::Generic { .. })),
        "{result:?}"
    );
    assert_eq!(
        server.object(BUCKET, "manifest").as_deref(),
        Some(&b"mine"[..])
    );
    assert_eq!(statuses(&server, OpKind::Put), [500]);
}

/// With the default retries the client resends the request after the 500; what it
/// then sees depends on the mode:
/// - `Overwrite`: the retry writes again and succeeds (two writes, the client sees Ok);
/// - `Create`: the retry finds its own object and fails with `AlreadyExists`;
/// - `Update`: the retry's `ETag` is stale (its own write changed it): `Precondition`.
#[tokio::test]
async fn drop_response_with_default_retries_depends_on_the_mode() {
    let server = server();
    let store = client(&server, Retries::Default);

    server.inject(Fault::once(OpKind::Put, FaultAction::DropResponse));
    store
        .put(&path("plain"), PutPayload::from_static(b"p"))
        .await
        .unwrap();
    assert_eq!(statuses(&server, OpKind::Put), [500, 200]);
    server.reset_log();

    server.inject(Fault::once(OpKind::Put, FaultAction::DropResponse));
    let created = store
        .put_opts(
            &path("manifest"),
            PutPayload::from_static(b"mine"),
            PutOptions::from(PutMode::Create),
        )
        .await;
    assert!(
        matches!(created, Err(object_store::Error::AlreadyExists { .. })),
        "{created:?}"
    );
    assert_eq!(
        server.object(BUCKET, "manifest").as_deref(),
        Some(&b"mine"[..])
    );
    assert_eq!(statuses(&server, OpKind::Put), [500, 412]);
    server.reset_log();

    let current = store.head(&path("manifest")).await.unwrap().e_tag;
    server.inject(Fault::once(OpKind::Put, FaultAction::DropResponse));
    let updated = store
        .put_opts(
            &path("manifest"),
            PutPayload::from_static(b"mine again"),
            PutOptions::from(PutMode::Update(UpdateVersion {
                e_tag: current,
                version: None,
            })),
        )
        .await;
    assert!(
        matches!(updated, Err(object_store::Error::Precondition { .. })),
        "{updated:?}"
    );
    assert_eq!(
        server.object(BUCKET, "manifest").as_deref(),
        Some(&b"mine again"[..])
    );
    assert_eq!(statuses(&server, OpKind::Put), [500, 412]);
}

#[tokio::test]
async fn truncated_put_without_retries_fails_and_leaves_the_old_version() {
    let server = server();
    let store = client(&server, Retries::None);
    server.put_object_direct(BUCKET, "layer", b"old".to_vec());
    server.inject(Fault::once(OpKind::Put, FaultAction::TruncateUpload));
    let big = vec![7u8; 4 << 20];
    let result = store
        .put(&path("layer"), PutPayload::from(big.clone()))
        .await;
    assert!(result.is_err(), "the client sees the cut connection");
    assert_eq!(server.object(BUCKET, "layer").as_deref(), Some(&b"old"[..]));
    let log = server.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, 0, "no answer was sent");
    assert!(
        log[0].bytes_in < big.len() as u64,
        "the body was cut: {}",
        log[0].bytes_in
    );
}

#[tokio::test]
async fn truncated_part_fails_the_upload_and_nothing_becomes_visible() {
    let server = server();
    let store = client(&server, Retries::None);
    server.inject(Fault::once(OpKind::UploadPart, FaultAction::TruncateUpload));
    let mut upload = store.put_multipart(&path("big")).await.unwrap();
    let part = upload.put_part(PutPayload::from(vec![1u8; 1 << 20])).await;
    assert!(part.is_err());
    upload.abort().await.unwrap();
    assert!(server.keys(BUCKET).is_empty());
    assert_eq!(server.open_multipart_uploads(), 0);
    assert_eq!(statuses(&server, OpKind::UploadPart), [0]);
}

#[tokio::test]
async fn truncated_complete_publishes_nothing() {
    let server = server();
    let store = client(&server, Retries::None);
    server.inject(Fault::once(
        OpKind::CompleteMultipart,
        FaultAction::TruncateUpload,
    ));
    let mut upload = store.put_multipart(&path("big")).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![1u8; 1000]))
        .await
        .unwrap();
    assert!(upload.complete().await.is_err());
    assert!(server.keys(BUCKET).is_empty());
    assert_eq!(
        server.open_multipart_uploads(),
        1,
        "the upload can still be aborted"
    );
    upload.abort().await.unwrap();
    assert_eq!(server.open_multipart_uploads(), 0);
}

#[tokio::test]
async fn request_log_counts_bytes_and_statuses() {
    let server = server();
    let store = client(&server, Retries::None);
    store
        .put(&path("a"), PutPayload::from(vec![0u8; 1234]))
        .await
        .unwrap();
    store.get(&path("a")).await.unwrap().bytes().await.unwrap();
    store.get_range(&path("a"), 100..200).await.unwrap();
    store.head(&path("a")).await.unwrap();
    assert!(store.head(&path("missing")).await.is_err());
    store.list_with_delimiter(None).await.unwrap();
    store.delete(&path("a")).await.unwrap();

    let log = server.requests();
    let summary: Vec<_> = log
        .iter()
        .map(|r| (r.op, r.key.as_str(), r.status))
        .collect();
    assert_eq!(
        summary,
        [
            (OpKind::Put, "a", 200),
            (OpKind::Get, "a", 200),
            (OpKind::Get, "a", 206),
            (OpKind::Head, "a", 200),
            (OpKind::Head, "missing", 404),
            (OpKind::List, "", 200),
            (OpKind::Delete, "a", 200),
        ]
    );
    assert!(log.iter().all(|r| r.bucket == BUCKET));
    assert_eq!(log[0].bytes_in, 1234);
    assert_eq!(log[1].bytes_out, 1234);
    assert_eq!((log[2].range, log[2].bytes_out), (Some((100, 200)), 100));
    assert_eq!(log[3].bytes_out, 0, "HEAD has no body");
    assert_eq!(count(&server, OpKind::Head), 2);
    // `object_store` deletes through `DeleteObjects` (POST ?delete), even one key; it
    // answers with an XML list of what was deleted.
    assert!(log[6].bytes_out > 0);

    server.reset_log();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let server = server();
    let store = client(&server, Retries::None);
    server.put_object_direct(BUCKET, "k", b"v".to_vec());
    server.set_latency(Duration::from_millis(50));
    let started = Instant::now();
    for _ in 0..4 {
        store.head(&path("k")).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    server.set_latency(Duration::ZERO);
    assert_eq!(count(&server, OpKind::Head), 4);
}

/// What the client reports for a faulted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Ok,
    /// `Error::Generic`: a 5xx status or a transport error, after any retries.
    Generic,
    AlreadyExists,
    NotFound,
}

fn seen<T>(result: &object_store::Result<T>) -> Seen {
    match result {
        Ok(_) => Seen::Ok,
        Err(object_store::Error::Generic { .. }) => Seen::Generic,
        Err(object_store::Error::AlreadyExists { .. }) => Seen::AlreadyExists,
        Err(object_store::Error::NotFound { .. }) => Seen::NotFound,
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// One row of the put matrix: fault, mode, retries → seen, visible afterwards, the
/// logged statuses.
type PutCase = (FaultAction, PutMode, Retries, Seen, bool, &'static [u16]);

/// The whole matrix for `PutObject` (1 MiB, so a truncation cuts a real body):
/// fault × put mode × retry policy → what the client sees, whether the object is
/// there afterwards, and the statuses the server logged (0 = connection cut).
///
/// `object_store` retries 5xx always, and transport errors only for idempotent
/// requests: an `Overwrite` put is idempotent, a `Create` put is not.
#[tokio::test]
async fn put_fault_matrix() {
    use FaultAction::{DropResponse, Fail, TruncateUpload};
    use PutMode::{Create, Overwrite};
    use Retries::{Default, None};
    #[rustfmt::skip]
    let cases: [PutCase; 12] = [
        (Fail,           Overwrite, None,    Seen::Generic,       false, &[503]),
        (Fail,           Create,    None,    Seen::Generic,       false, &[503]),
        (Fail,           Overwrite, Default, Seen::Ok,            true,  &[503, 200]),
        (Fail,           Create,    Default, Seen::Ok,            true,  &[503, 200]),
        (DropResponse,   Overwrite, None,    Seen::Generic,       true,  &[500]),
        (DropResponse,   Create,    None,    Seen::Generic,       true,  &[500]),
        (DropResponse,   Overwrite, Default, Seen::Ok,            true,  &[500, 200]),
        // The lost response: the retry finds the client's own object.
        (DropResponse,   Create,    Default, Seen::AlreadyExists, true,  &[500, 412]),
        (TruncateUpload, Overwrite, None,    Seen::Generic,       false, &[0]),
        (TruncateUpload, Create,    None,    Seen::Generic,       false, &[0]),
        (TruncateUpload, Overwrite, Default, Seen::Ok,            true,  &[0, 200]),
        // Not idempotent, so a cut connection is not resent.
        (TruncateUpload, Create,    Default, Seen::Generic,       false, &[0]),
    ];
    for (action, mode, retries, expected, visible, logged) in cases {
        let case = format!("{action:?} {mode:?} {retries:?}");
        let server = crate::server();
        let store = client(&server, retries);
        server.inject(Fault::once(OpKind::Put, action));
        let payload = PutPayload::from(vec![9u8; 1 << 20]);
        let result = store
            .put_opts(&path("k"), payload, PutOptions::from(mode))
            .await;
        assert_eq!(seen(&result), expected, "{case}: {result:?}");
        assert_eq!(server.object(BUCKET, "k").is_some(), visible, "{case}");
        assert_eq!(statuses(&server, OpKind::Put), logged, "{case}");
    }
}

/// Multipart under faults with the default retries: a cut part is resent; a lost
/// `CompleteMultipartUpload` answer is retried, finds the upload gone (`NoSuchUpload`,
/// 404) and reports `NotFound`, although the object was published.
#[tokio::test]
async fn multipart_faults_with_default_retries() {
    let server = server();
    let store = client(&server, Retries::Default);
    server.inject(Fault::once(OpKind::UploadPart, FaultAction::TruncateUpload));
    let mut upload = store.put_multipart(&path("a")).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![1u8; 1 << 20]))
        .await
        .unwrap();
    upload.complete().await.unwrap();
    assert_eq!(server.object(BUCKET, "a").unwrap().len(), 1 << 20);
    assert_eq!(statuses(&server, OpKind::UploadPart), [0, 200]);

    server.inject(Fault::once(
        OpKind::CompleteMultipart,
        FaultAction::DropResponse,
    ));
    let mut upload = store.put_multipart(&path("b")).await.unwrap();
    upload
        .put_part(PutPayload::from_static(b"tiny"))
        .await
        .unwrap();
    let result = upload.complete().await;
    assert_eq!(seen(&result), Seen::NotFound, "{result:?}");
    assert_eq!(server.object(BUCKET, "b").as_deref(), Some(&b"tiny"[..]));
    assert_eq!(
        statuses(&server, OpKind::CompleteMultipart),
        [200, 500, 404]
    );
}
