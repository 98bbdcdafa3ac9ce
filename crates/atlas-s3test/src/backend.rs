//! The S3 operations, translated between `s3s` DTOs and the [`Store`].
//!
//! **Invariant:** this module holds no state of its own and takes no lock; each
//! operation is one call into the store, so each is atomic there.

use std::sync::Arc;

use bytes::Bytes;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput,
    CopyObjectResult, CopyPartResult, CopySource, CreateBucketInput, CreateBucketOutput,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteObjectInput, DeleteObjectOutput,
    DeleteObjectsInput, DeleteObjectsOutput, DeletedObject, ETag, ETagCondition, GetObjectInput,
    GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput,
    ListBucketsInput, ListBucketsOutput, ListObjectsV2Input, ListObjectsV2Output, PutObjectInput,
    PutObjectOutput, Range, StreamingBlob, Timestamp, UploadPartCopyInput, UploadPartCopyOutput,
    UploadPartInput, UploadPartOutput,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use crate::store::{
    Conditions, EtagCondition, Failure, ListEntry, ListQuery, Object, Store, MAX_KEYS_PER_PAGE,
};

/// The `s3s` backend: a handle on the shared store.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    pub(crate) store: Arc<Store>,
}

impl From<Failure> for S3Error {
    fn from(failure: Failure) -> S3Error {
        let code = match failure {
            Failure::NoSuchBucket => S3ErrorCode::NoSuchBucket,
            Failure::NoSuchKey => S3ErrorCode::NoSuchKey,
            Failure::PreconditionFailed => S3ErrorCode::PreconditionFailed,
            Failure::NotModified => S3ErrorCode::NotModified,
            Failure::NoSuchUpload => S3ErrorCode::NoSuchUpload,
            Failure::InvalidPart => S3ErrorCode::InvalidPart,
            Failure::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
            Failure::EntityTooSmall => S3ErrorCode::EntityTooSmall,
            Failure::BucketAlreadyOwnedByYou => S3ErrorCode::BucketAlreadyOwnedByYou,
        };
        S3Error::new(code)
    }
}

fn condition(cond: Option<ETagCondition>) -> Option<EtagCondition> {
    cond.map(|cond| match cond.into_etag() {
        // Weak tags never match a strong comparison; keep the value so it simply
        // fails to equal any stored (strong) tag.
        Some(etag) => EtagCondition::Tag(etag.into_value()),
        None => EtagCondition::Any,
    })
}

fn conditions(if_match: Option<ETagCondition>, if_none_match: Option<ETagCondition>) -> Conditions {
    Conditions {
        if_match: condition(if_match),
        if_none_match: condition(if_none_match),
        if_generation_match: None,
    }
}

fn etag(object: &Object) -> ETag {
    ETag::Strong(object.etag.clone())
}

async fn read_body(body: Option<StreamingBlob>) -> S3Result<Bytes> {
    let Some(blob) = body else {
        return Ok(Bytes::new());
    };
    let mut body = s3s::Body::from(blob);
    body.store_all_limited(usize::MAX).await.map_err(|err| {
        S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            format!("reading the body: {err}"),
        )
    })
}

/// The bytes of `data` that `range` selects, and the span as `(first, end)`.
fn slice(data: &Bytes, range: Range) -> S3Result<(Bytes, (u64, u64))> {
    let span = range
        .check(data.len() as u64)
        .map_err(|_| S3Error::new(S3ErrorCode::InvalidRange))?;
    Ok((
        data.slice(span.start as usize..span.end as usize),
        (span.start, span.end),
    ))
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.store.create_bucket(&req.input.bucket)?;
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        if !self.store.bucket_exists(&req.input.bucket) {
            return Err(Failure::NoSuchBucket.into());
        }
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .store
            .bucket_names()
            .into_iter()
            .map(|name| Bucket {
                name: Some(name),
                ..Bucket::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..ListBucketsOutput::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let data = read_body(input.body).await?;
        let conditions = conditions(input.if_match, input.if_none_match);
        let object = self
            .store
            .put(&input.bucket, &input.key, data, &conditions)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&object)),
            ..PutObjectOutput::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let CopySource::Bucket { bucket, key, .. } = input.copy_source else {
            return Err(S3Error::new(S3ErrorCode::NotImplemented));
        };
        let source = self.store.get(&bucket, &key, &Conditions::default())?;
        let object = self.store.put(
            &input.bucket,
            &input.key,
            source.data,
            &Conditions::default(),
        )?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&object)),
                last_modified: Some(Timestamp::from(object.last_modified)),
                ..CopyObjectResult::default()
            }),
            ..CopyObjectOutput::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let conditions = conditions(input.if_match, input.if_none_match);
        let object = self.store.get(&input.bucket, &input.key, &conditions)?;
        let total = object.data.len() as u64;
        let (data, content_range) = match input.range {
            None => (object.data.clone(), None),
            Some(range) => {
                let (data, (first, end)) = slice(&object.data, range)?;
                (data, Some(format!("bytes {first}-{}/{total}", end - 1)))
            }
        };
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(data.len() as i64),
            body: Some(StreamingBlob::from(s3s::Body::from(data))),
            content_range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(etag(&object)),
            last_modified: Some(Timestamp::from(object.last_modified)),
            ..GetObjectOutput::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let conditions = conditions(input.if_match, input.if_none_match);
        let object = self.store.get(&input.bucket, &input.key, &conditions)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(object.data.len() as i64),
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(etag(&object)),
            last_modified: Some(Timestamp::from(object.last_modified)),
            ..HeadObjectOutput::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.store.delete(&req.input.bucket, &req.input.key)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let mut deleted = Vec::with_capacity(input.delete.objects.len());
        for object in input.delete.objects {
            self.store.delete(&input.bucket, &object.key)?;
            deleted.push(DeletedObject {
                key: Some(object.key),
                ..DeletedObject::default()
            });
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max_keys = input.max_keys.map_or(MAX_KEYS_PER_PAGE, |n| {
            (n.max(1) as usize).min(MAX_KEYS_PER_PAGE)
        });
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            // The continuation token is the last entry listed; it supersedes start-after.
            after: input
                .continuation_token
                .clone()
                .or_else(|| input.start_after.clone()),
            max_keys,
        };
        let page = self.store.list(&input.bucket, &query)?;
        let mut contents = Vec::new();
        let mut common_prefixes = Vec::new();
        let key_count = page.entries.len() as i32;
        for entry in page.entries {
            match entry {
                ListEntry::Object { key, object } => contents.push(s3s::dto::Object {
                    key: Some(key),
                    size: Some(object.data.len() as i64),
                    e_tag: Some(etag(&object)),
                    last_modified: Some(Timestamp::from(object.last_modified)),
                    ..s3s::dto::Object::default()
                }),
                ListEntry::CommonPrefix(prefix) => common_prefixes.push(CommonPrefix {
                    prefix: Some(prefix),
                }),
            }
        }
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(max_keys as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            is_truncated: Some(page.next_after.is_some()),
            next_continuation_token: page.next_after,
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            ..ListObjectsV2Output::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let upload_id = self.store.create_multipart(&input.bucket, &input.key)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..CreateMultipartUploadOutput::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let data = read_body(input.body).await?;
        let etag = self.store.upload_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            input.part_number,
            data,
        )?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..UploadPartOutput::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let CopySource::Bucket { bucket, key, .. } = input.copy_source else {
            return Err(S3Error::new(S3ErrorCode::NotImplemented));
        };
        let source = self.store.get(&bucket, &key, &Conditions::default())?;
        let data = match input.copy_source_range {
            None => source.data,
            Some(header) => {
                let range = Range::parse(&header)
                    .map_err(|_| S3Error::new(S3ErrorCode::InvalidArgument))?;
                slice(&source.data, range)?.0
            }
        };
        let etag = self.store.upload_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            input.part_number,
            data,
        )?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                ..CopyPartResult::default()
            }),
            ..UploadPartCopyOutput::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let mut parts = Vec::new();
        for part in input
            .multipart_upload
            .and_then(|upload| upload.parts)
            .unwrap_or_default()
        {
            let (Some(number), Some(tag)) = (part.part_number, part.e_tag) else {
                return Err(S3Error::new(S3ErrorCode::InvalidPart));
            };
            parts.push((number, tag.into_value()));
        }
        let conditions = conditions(input.if_match, input.if_none_match);
        let object = self.store.complete_multipart(
            &input.bucket,
            &input.key,
            &input.upload_id,
            &parts,
            &conditions,
        )?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(&object)),
            ..CompleteMultipartUploadOutput::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.store
            .abort_multipart(&input.bucket, &input.key, &input.upload_id)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}
