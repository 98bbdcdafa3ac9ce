//! Conditional writes: create-if-absent, replace-if-unchanged, and races between them.

use std::sync::{Arc, Barrier};

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::{client, path, server, Retries, BUCKET};

fn create() -> PutOptions {
    PutOptions::from(PutMode::Create)
}

fn update(e_tag: Option<String>) -> PutOptions {
    PutOptions::from(PutMode::Update(UpdateVersion {
        e_tag,
        version: None,
    }))
}

#[tokio::test]
async fn create_twice_is_already_exists() {
    let server = server();
    let store = client(&server, Retries::None);
    let key = path("manifest");
    store
        .put_opts(&key, PutPayload::from_static(b"first"), create())
        .await
        .unwrap();
    let second = store
        .put_opts(&key, PutPayload::from_static(b"second"), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(
        server.object(BUCKET, "manifest").as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(server.requests().last().unwrap().status, 412);
}

#[tokio::test]
async fn update_needs_the_current_etag() {
    let server = server();
    let store = client(&server, Retries::None);
    let key = path("manifest");

    let missing = store
        .put_opts(
            &key,
            PutPayload::from_static(b"x"),
            update(Some("\"nope\"".into())),
        )
        .await;
    assert!(
        matches!(missing, Err(object_store::Error::Precondition { .. })),
        "If-Match on a missing key: {missing:?}"
    );
    assert!(server.keys(BUCKET).is_empty());

    let v1 = store
        .put(&key, PutPayload::from_static(b"v1"))
        .await
        .unwrap();
    let v2 = store
        .put_opts(
            &key,
            PutPayload::from_static(b"v2"),
            update(v1.e_tag.clone()),
        )
        .await
        .unwrap();
    assert_ne!(v1.e_tag, v2.e_tag);

    let stale = store
        .put_opts(&key, PutPayload::from_static(b"v3"), update(v1.e_tag))
        .await;
    assert!(
        matches!(stale, Err(object_store::Error::Precondition { .. })),
        "{stale:?}"
    );
    assert_eq!(
        server.object(BUCKET, "manifest").as_deref(),
        Some(&b"v2"[..])
    );
}

#[tokio::test]
async fn equal_content_gets_a_new_etag() {
    let server = server();
    let store = client(&server, Retries::None);
    let a = store
        .put(&path("k"), PutPayload::from_static(b"same"))
        .await
        .unwrap();
    let b = store
        .put(&path("k"), PutPayload::from_static(b"same"))
        .await
        .unwrap();
    assert_ne!(a.e_tag, b.e_tag);
    let stale = store
        .put_opts(
            &path("k"),
            PutPayload::from_static(b"same"),
            update(a.e_tag),
        )
        .await;
    assert!(matches!(
        stale,
        Err(object_store::Error::Precondition { .. })
    ));
}

/// Two threads, each with its own runtime and client, race 200 rounds of
/// replace-if-unchanged from the same version: exactly one wins each round.
#[test]
fn racing_conditional_updates_have_one_winner_per_round() {
    const N_ROUNDS: usize = 200;
    const N_WRITERS: usize = 2;
    let server = server();
    server.put_object_direct(BUCKET, "manifest", b"genesis".to_vec());
    let barrier = Arc::new(Barrier::new(N_WRITERS));
    let endpoint_server = Arc::new(server);

    let writers: Vec<_> = (0..N_WRITERS)
        .map(|writer_idx| {
            let barrier = Arc::clone(&barrier);
            let server = Arc::clone(&endpoint_server);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let store = client(&server, Retries::None);
                let key = path("manifest");
                let mut outcomes = Vec::with_capacity(N_ROUNDS);
                for round in 0..N_ROUNDS {
                    // Both read the version before either writes.
                    barrier.wait();
                    let seen = runtime.block_on(store.head(&key)).unwrap().e_tag;
                    barrier.wait();
                    let payload = format!("round {round} writer {writer_idx}");
                    let result = runtime.block_on(store.put_opts(
                        &key,
                        PutPayload::from(payload.into_bytes()),
                        update(seen.clone()),
                    ));
                    let won = match result {
                        Ok(_) => true,
                        Err(object_store::Error::Precondition { .. }) => false,
                        Err(other) => panic!("round {round}: unexpected {other}"),
                    };
                    outcomes.push((seen, won));
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<Vec<(Option<String>, bool)>> =
        writers.into_iter().map(|w| w.join().unwrap()).collect();

    let mut last_winner = None;
    for round in 0..N_ROUNDS {
        let seen: Vec<_> = outcomes.iter().map(|o| o[round].0.clone()).collect();
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "round {round}: both saw one version"
        );
        let winners: Vec<usize> = (0..N_WRITERS).filter(|&w| outcomes[w][round].1).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner, got {winners:?}"
        );
        last_winner = Some(winners[0]);
    }
    let expected = format!("round {} writer {}", N_ROUNDS - 1, last_winner.unwrap());
    assert_eq!(
        endpoint_server.object(BUCKET, "manifest").unwrap(),
        expected.into_bytes()
    );
}

/// `copy_if_not_exists` with `S3CopyIfNotExists::Multipart` copies through
/// `UploadPartCopy` and completes with `If-None-Match: *`: the conditional complete,
/// over HTTP.
#[tokio::test]
async fn copy_if_not_exists_through_a_conditional_complete() {
    let server = server();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(BUCKET)
        .with_region(atlas_s3test::REGION)
        .with_access_key_id(atlas_s3test::ACCESS_KEY)
        .with_secret_access_key(atlas_s3test::SECRET_KEY)
        .with_copy_if_not_exists(object_store::aws::S3CopyIfNotExists::Multipart)
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..object_store::RetryConfig::default()
        })
        .build()
        .unwrap();
    server.put_object_direct(BUCKET, "src", b"payload".to_vec());
    store
        .copy_if_not_exists(&path("src"), &path("dst"))
        .await
        .unwrap();
    assert_eq!(
        server.object(BUCKET, "dst").as_deref(),
        Some(&b"payload"[..])
    );

    server.put_object_direct(BUCKET, "src", b"changed".to_vec());
    let again = store.copy_if_not_exists(&path("src"), &path("dst")).await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(
        server.object(BUCKET, "dst").as_deref(),
        Some(&b"payload"[..])
    );
    assert_eq!(
        server.open_multipart_uploads(),
        0,
        "the failed copy was aborted"
    );
    let complete_statuses: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.op == atlas_s3test::OpKind::CompleteMultipart)
        .map(|r| r.status)
        .collect();
    assert_eq!(complete_statuses, [200, 412]);

    // A plain copy overwrites.
    store.copy(&path("src"), &path("dst")).await.unwrap();
    assert_eq!(
        server.object(BUCKET, "dst").as_deref(),
        Some(&b"changed"[..])
    );
}
