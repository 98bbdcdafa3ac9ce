//! What a test can ask of the server besides S3: faults to inject, and the request
//! log's vocabulary (operation kinds, one log entry per request).
//!
//! **Invariant:** faults fire in the order they were queued: a request consumes one
//! firing of the *first* queued fault that matches it, and a fault leaves the queue
//! when its `times` are used up. A request consumes at most one fault.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;

/// The kind of S3 operation a request is, as the request log and faults see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `GetObject` (`GET /bucket/key`).
    Get,
    /// `HeadObject` (`HEAD /bucket/key`).
    Head,
    /// `PutObject` (`PUT /bucket/key`, no copy source).
    Put,
    /// `DeleteObject` (`DELETE /bucket/key`) or `DeleteObjects` (`POST /bucket?delete`,
    /// which `object_store` uses even for one key; logged with the batch's keys).
    Delete,
    /// `ListObjectsV2` or `ListObjects` (`GET /bucket`).
    List,
    /// `CreateMultipartUpload` (`POST /bucket/key?uploads`).
    CreateMultipart,
    /// `UploadPart` (`PUT /bucket/key?partNumber=N&uploadId=U`).
    UploadPart,
    /// `CompleteMultipartUpload` (`POST /bucket/key?uploadId=U`).
    CompleteMultipart,
    /// `AbortMultipartUpload` (`DELETE /bucket/key?uploadId=U`).
    AbortMultipart,
    /// Anything else: bucket operations, copies, `ListBuckets`, …
    Other,
}

impl OpKind {
    /// Whether a [`FaultAction::TruncateUpload`] applies: the operations that publish
    /// or carry upload bytes.
    pub fn is_upload(self) -> bool {
        matches!(
            self,
            OpKind::Put | OpKind::UploadPart | OpKind::CompleteMultipart
        )
    }
}

/// What an injected fault does to a matching request.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer `503 SlowDown` without applying the operation.
    Fail,
    /// Wait this long before handling the request (on top of the server's latency).
    Delay(Duration),
    /// Apply the operation, then answer `500 InternalError`, so the client believes it
    /// failed although it took effect (the lost-response case).
    DropResponse,
    /// For `PutObject`, `UploadPart` and `CompleteMultipartUpload` only (other
    /// operations never match it): read part of the request body, then close the
    /// connection without an answer. Nothing is applied, nothing becomes visible.
    TruncateUpload,
}

/// A fault to inject: which requests it matches, what it does, how often.
#[derive(Clone, Debug)]
pub struct Fault {
    /// The operation to match; `None` matches any.
    pub op: Option<OpKind>,
    /// Match only requests whose object key contains this string (for
    /// `DeleteObjects`, any key of the batch).
    pub key_contains: Option<String>,
    /// What happens to a matching request.
    pub action: FaultAction,
    /// How many matching requests the fault fires on before it is used up.
    pub times: usize,
}

impl Fault {
    /// A fault firing once on every operation of kind `op`.
    pub fn once(op: OpKind, action: FaultAction) -> Fault {
        Fault {
            op: Some(op),
            key_contains: None,
            action,
            times: 1,
        }
    }

    /// Restricts the fault to keys containing `needle`.
    #[must_use]
    pub fn on_keys_containing(mut self, needle: &str) -> Fault {
        self.key_contains = Some(needle.to_owned());
        self
    }

    /// Sets how many times the fault fires.
    #[must_use]
    pub fn times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }

    fn matches(&self, op: OpKind, key: &str) -> bool {
        if self.op.is_some_and(|wanted| wanted != op) {
            return false;
        }
        if matches!(self.action, FaultAction::TruncateUpload) && !op.is_upload() {
            return false;
        }
        self.key_contains
            .as_deref()
            .is_none_or(|needle| key.contains(needle))
    }
}

/// One entry of the request log.
#[derive(Clone, Debug)]
pub struct Request {
    /// What kind of operation the request was.
    pub op: OpKind,
    /// The bucket named in the path (empty for `ListBuckets`).
    pub bucket: String,
    /// The object key, percent-decoded (empty for bucket operations); for
    /// `DeleteObjects`, the keys of the batch joined by newlines.
    pub key: String,
    /// The byte range asked for by a `Range` header, start inclusive, end exclusive,
    /// resolved against the object's size (for `bytes=-N` and open ends) when it exists.
    pub range: Option<(u64, u64)>,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// The HTTP status answered; `0` when the connection was cut without an answer
    /// ([`FaultAction::TruncateUpload`]).
    pub status: u16,
}

/// The queue of faults waiting to fire.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    faults: Mutex<VecDeque<Fault>>,
}

impl FaultQueue {
    pub(crate) fn push(&self, fault: Fault) {
        if fault.times > 0 {
            self.faults.lock().push_back(fault);
        }
    }

    pub(crate) fn clear(&self) {
        self.faults.lock().clear();
    }

    /// Consumes one firing of the first fault matching the request, if any.
    pub(crate) fn take(&self, op: OpKind, key: &str) -> Option<FaultAction> {
        let mut faults = self.faults.lock();
        let idx = faults.iter().position(|fault| fault.matches(op, key))?;
        let fault = &mut faults[idx];
        fault.times -= 1;
        let action = fault.action.clone();
        if fault.times == 0 {
            faults.remove(idx);
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_in_order_and_wear_out() {
        let queue = FaultQueue::default();
        queue.push(Fault::once(OpKind::Put, FaultAction::Fail).times(2));
        queue.push(Fault {
            op: None,
            key_contains: Some("manifest".into()),
            action: FaultAction::DropResponse,
            times: 1,
        });
        assert!(queue.take(OpKind::Get, "data").is_none());
        assert!(matches!(
            queue.take(OpKind::Put, "manifest"),
            Some(FaultAction::Fail)
        ));
        assert!(matches!(
            queue.take(OpKind::Put, "x"),
            Some(FaultAction::Fail)
        ));
        assert!(matches!(
            queue.take(OpKind::Put, "manifest"),
            Some(FaultAction::DropResponse)
        ));
        assert!(queue.take(OpKind::Put, "manifest").is_none());
    }

    #[test]
    fn truncation_matches_uploads_only() {
        let queue = FaultQueue::default();
        queue.push(Fault {
            op: None,
            key_contains: None,
            action: FaultAction::TruncateUpload,
            times: 1,
        });
        assert!(queue.take(OpKind::Get, "k").is_none());
        assert!(queue.take(OpKind::CreateMultipart, "k").is_none());
        assert!(matches!(
            queue.take(OpKind::UploadPart, "k"),
            Some(FaultAction::TruncateUpload)
        ));
    }

    #[test]
    fn zero_times_never_fires() {
        let queue = FaultQueue::default();
        queue.push(Fault::once(OpKind::Get, FaultAction::Fail).times(0));
        assert!(queue.take(OpKind::Get, "k").is_none());
    }
}
