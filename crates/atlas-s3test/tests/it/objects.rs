//! Plain object operations through the client: put, get, ranges, head, list, delete,
//! multipart.

use atlas_s3test::{OpKind, S3Server, MIN_PART_SIZE_BYTES};
use futures::TryStreamExt;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::{client, count, path, server, Retries, BUCKET};

#[tokio::test]
async fn put_get_head_delete_round_trip() {
    let server = server();
    let store = client(&server, Retries::None);
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let put = store
        .put(&path("dir/obj.bin"), PutPayload::from(data.clone()))
        .await
        .unwrap();
    assert_eq!(
        server.object(BUCKET, "dir/obj.bin").as_deref(),
        Some(&data[..])
    );

    let got = store.get(&path("dir/obj.bin")).await.unwrap();
    assert_eq!(got.meta.size, 10_000);
    assert_eq!(got.meta.e_tag, put.e_tag);
    assert_eq!(got.bytes().await.unwrap(), data);

    let head = store.head(&path("dir/obj.bin")).await.unwrap();
    assert_eq!(head.size, 10_000);
    assert_eq!(head.e_tag, put.e_tag);
    let age = chrono_free_age_secs(head.last_modified.timestamp());
    assert!(age <= 60, "Last-Modified is about now, {age} s off");

    store.delete(&path("dir/obj.bin")).await.unwrap();
    assert!(server.object(BUCKET, "dir/obj.bin").is_none());
    assert!(matches!(
        store.head(&path("dir/obj.bin")).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get(&path("dir/obj.bin")).await,
        Err(object_store::Error::NotFound { .. })
    ));
    // Deleting a missing key succeeds, as in S3.
    store.delete(&path("dir/obj.bin")).await.unwrap();
}

/// Seconds between a Unix timestamp and now, either way.
fn chrono_free_age_secs(unix_secs: i64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now.abs_diff(unix_secs)
}

#[tokio::test]
async fn ranges_bounded_open_and_suffix() {
    let server = server();
    let store = client(&server, Retries::None);
    let data: Vec<u8> = (0..100u8).collect();
    server.put_object_direct(BUCKET, "r", data.clone());

    assert_eq!(
        store.get_range(&path("r"), 10..20).await.unwrap(),
        &data[10..20]
    );
    // A range past the end is cut at the end, as in S3.
    assert_eq!(
        store.get_range(&path("r"), 90..200).await.unwrap(),
        &data[90..]
    );

    let suffix = store
        .get_opts(
            &path("r"),
            GetOptions {
                range: Some(GetRange::Suffix(7)),
                ..GetOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(suffix.range, 93..100);
    assert_eq!(suffix.bytes().await.unwrap(), &data[93..]);

    let offset = store
        .get_opts(
            &path("r"),
            GetOptions {
                range: Some(GetRange::Offset(95)),
                ..GetOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(offset.bytes().await.unwrap(), &data[95..]);

    // The client coalesces nearby ranges into one request (0..60).
    let ranges = store.get_ranges(&path("r"), &[0..1, 50..60]).await.unwrap();
    assert_eq!(ranges, [&data[0..1], &data[50..60]]);

    let logged: Vec<_> = server
        .requests()
        .iter()
        .filter(|r| r.op == OpKind::Get)
        .map(|r| (r.range, r.bytes_out))
        .collect();
    assert_eq!(
        logged,
        [
            (Some((10, 20)), 10),
            (Some((90, 100)), 10),
            (Some((93, 100)), 7),
            (Some((95, 100)), 5),
            (Some((0, 60)), 60),
        ]
    );
}

#[tokio::test]
async fn conditional_gets() {
    let server = server();
    let store = client(&server, Retries::None);
    server.put_object_direct(BUCKET, "c", b"v1".to_vec());
    let etag = store.head(&path("c")).await.unwrap().e_tag.unwrap();

    let same = GetOptions {
        if_match: Some(etag.clone()),
        ..GetOptions::default()
    };
    assert_eq!(
        store
            .get_opts(&path("c"), same)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        &b"v1"[..]
    );
    let unchanged = GetOptions {
        if_none_match: Some(etag.clone()),
        ..GetOptions::default()
    };
    assert!(matches!(
        store.get_opts(&path("c"), unchanged).await,
        Err(object_store::Error::NotModified { .. })
    ));

    server.put_object_direct(BUCKET, "c", b"v2".to_vec());
    let stale = GetOptions {
        if_match: Some(etag),
        ..GetOptions::default()
    };
    assert!(matches!(
        store.get_opts(&path("c"), stale).await,
        Err(object_store::Error::Precondition { .. })
    ));
}

#[tokio::test]
async fn list_with_prefix_delimiter_and_pages() {
    let server = server();
    let store = client(&server, Retries::None);
    // 2,500 keys under "many/" (three pages of at most 1,000), plus a small tree.
    for idx in 0..2500 {
        server.put_object_direct(BUCKET, &format!("many/{idx:05}"), vec![1]);
    }
    for key in [
        "tree/a/1", "tree/a/2", "tree/b/1", "tree/c", "tree/d", "treeless",
    ] {
        server.put_object_direct(BUCKET, key, key.as_bytes().to_vec());
    }
    server.reset_log();

    let listed: Vec<_> = store.list(Some(&path("many"))).try_collect().await.unwrap();
    assert_eq!(listed.len(), 2500);
    let keys: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    assert_eq!(keys, server.keys(BUCKET)[..2500]);
    assert_eq!(
        count(&server, OpKind::List),
        3,
        "2,500 keys take three pages"
    );

    let tree = store
        .list_with_delimiter(Some(&path("tree")))
        .await
        .unwrap();
    let prefixes: Vec<String> = tree
        .common_prefixes
        .iter()
        .map(ToString::to_string)
        .collect();
    let objects: Vec<String> = tree
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(prefixes, ["tree/a", "tree/b"]);
    assert_eq!(objects, ["tree/c", "tree/d"]);
    assert_eq!(tree.objects[0].size, "tree/c".len() as u64);

    // list_with_offset sends start-after.
    let after: Vec<String> = store
        .list_with_offset(Some(&path("tree")), &path("tree/b/1"))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(after, ["tree/c", "tree/d"]);

    let top = store.list_with_delimiter(None).await.unwrap();
    let prefixes: Vec<String> = top
        .common_prefixes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(prefixes, ["many", "tree"]);
    assert_eq!(
        top.objects.len(),
        1,
        "only `treeless` is a top-level object"
    );
}

#[tokio::test]
async fn list_of_a_delimited_prefix_pages_past_1000_prefixes() {
    let server = server();
    let store = client(&server, Retries::None);
    for idx in 0..1200 {
        server.put_object_direct(BUCKET, &format!("ds/{idx:04}/manifest"), vec![]);
        server.put_object_direct(BUCKET, &format!("ds/{idx:04}/data"), vec![]);
    }
    let listed = store.list_with_delimiter(Some(&path("ds"))).await.unwrap();
    assert_eq!(listed.common_prefixes.len(), 1200);
    assert!(listed.objects.is_empty());
    assert_eq!(count(&server, OpKind::List), 2);
}

#[tokio::test]
async fn multipart_upload_becomes_visible_on_complete_only() {
    let server = server();
    let store = client(&server, Retries::None);
    let part = |fill: u8| vec![fill; MIN_PART_SIZE_BYTES + 1];

    let mut upload = store.put_multipart(&path("big/layer")).await.unwrap();
    upload.put_part(PutPayload::from(part(1))).await.unwrap();
    upload.put_part(PutPayload::from(part(2))).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![3u8; 10]))
        .await
        .unwrap();
    assert!(server.keys(BUCKET).is_empty(), "parts are invisible");
    assert_eq!(server.open_multipart_uploads(), 1);
    let done = upload.complete().await.unwrap();

    let stored = server.object(BUCKET, "big/layer").unwrap();
    assert_eq!(stored.len(), 2 * (MIN_PART_SIZE_BYTES + 1) + 10);
    assert!(stored[..=MIN_PART_SIZE_BYTES].iter().all(|&b| b == 1));
    assert!(stored[MIN_PART_SIZE_BYTES + 1..stored.len() - 10]
        .iter()
        .all(|&b| b == 2));
    assert_eq!(&stored[stored.len() - 10..], &[3u8; 10]);
    assert_eq!(
        store.head(&path("big/layer")).await.unwrap().e_tag,
        done.e_tag
    );
    assert_eq!(server.open_multipart_uploads(), 0);
    for op in [OpKind::CreateMultipart, OpKind::CompleteMultipart] {
        assert_eq!(count(&server, op), 1, "{op:?}");
    }
    assert_eq!(count(&server, OpKind::UploadPart), 3);
}

#[tokio::test]
async fn write_multipart_in_chunks() {
    let server = server();
    let store = client(&server, Retries::None);
    let data: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let upload = store.put_multipart(&path("chunks")).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, MIN_PART_SIZE_BYTES);
    writer.write(&data);
    writer.finish().await.unwrap();
    assert_eq!(server.object(BUCKET, "chunks").unwrap(), data);
    assert_eq!(count(&server, OpKind::UploadPart), 3, "5 + 5 + 2 MiB");
}

#[tokio::test]
async fn aborted_multipart_leaves_nothing() {
    let server = server();
    let store = client(&server, Retries::None);
    let mut upload = store.put_multipart(&path("gone")).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![0u8; 100]))
        .await
        .unwrap();
    upload.abort().await.unwrap();
    assert!(server.keys(BUCKET).is_empty());
    assert_eq!(server.open_multipart_uploads(), 0);
    assert_eq!(count(&server, OpKind::AbortMultipart), 1);
}

#[tokio::test]
async fn small_middle_parts_are_rejected_as_in_s3() {
    let server = server();
    let store = client(&server, Retries::None);
    let mut upload = store.put_multipart(&path("small")).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![0u8; 100]))
        .await
        .unwrap();
    upload
        .put_part(PutPayload::from(vec![0u8; 100]))
        .await
        .unwrap();
    assert!(upload.complete().await.is_err());
    assert!(server.keys(BUCKET).is_empty());
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_requests_are_refused() {
    let server = server();
    server.put_object_direct(BUCKET, "k", vec![1]);
    let wrong = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region(atlas_s3test::REGION)
        .with_access_key_id(atlas_s3test::ACCESS_KEY)
        .with_secret_access_key("not-the-secret")
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..object_store::RetryConfig::default()
        })
        .build()
        .unwrap();
    assert!(wrong.get(&path("k")).await.is_err());
    assert_eq!(server.requests()[0].status, 403);
}

#[test]
fn works_outside_a_runtime_and_stops_on_drop() {
    let server = S3Server::start();
    let endpoint = server.endpoint();
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    drop(server);
    // The port is free again: a new server can take it.
    let again = S3Server::start_on(port).expect("the dropped server released its port");
    assert_eq!(again.endpoint(), endpoint);
}

#[test]
#[should_panic(expected = "not a valid S3 bucket name")]
fn invalid_bucket_names_are_refused_up_front() {
    S3Server::start().create_bucket("No_Such");
}
