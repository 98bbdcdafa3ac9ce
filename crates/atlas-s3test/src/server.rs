//! The server's life: a thread with its own tokio runtime accepting connections on
//! 127.0.0.1, and the layer in front of the protocol (`s3s` for S3, `gcs.rs` for
//! Google Cloud Storage's XML API) that adds latency, fires faults and writes the
//! request log.
//!
//! **Invariant:** a request's log entry is written before its answer is sent, so a
//! client that has seen an answer (or a cut connection) finds the entry in
//! [`S3Server::requests`].
//!
//! **Invariant:** the layer reads each request body in full before `s3s` sees it, and
//! reads each answer in full before sending it; the in-memory store holds whole
//! objects anyway, and this makes `bytes_in`/`bytes_out` exact.

use std::error::Error as StdError;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Request as HttpRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::backend::Backend;
use crate::fault::{Fault, FaultAction, FaultQueue, Request};
use crate::gcs;
use crate::route::{self, Target};
use crate::store::Store;
use crate::{ACCESS_KEY, SECRET_KEY};

type BoxError = Box<dyn StdError + Send + Sync>;

/// State shared by the handle and the request handlers.
#[derive(Debug, Default)]
struct Shared {
    store: Arc<Store>,
    faults: FaultQueue,
    log: Mutex<Vec<Request>>,
    latency: Mutex<Duration>,
}

impl Shared {
    fn record(&self, target: &Target, content_range: Option<&str>, sizes: (u64, u64), status: u16) {
        // Only a ranged request needs the object's size (to resolve `bytes=-N`).
        let size = target
            .range
            .and_then(|_| self.store.size(&target.bucket, &target.key));
        let range = target.logged_range(content_range, size);
        self.log.lock().push(Request {
            op: target.op,
            bucket: target.bucket.clone(),
            key: target.key.clone(),
            range,
            bytes_in: sizes.0,
            bytes_out: sizes.1,
            status,
        });
    }
}

/// The protocol a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Amazon S3: `SigV4`-signed requests with [`ACCESS_KEY`](crate::ACCESS_KEY) and
    /// [`SECRET_KEY`](crate::SECRET_KEY); clients configured by
    /// [`client_options`](crate::client_options).
    S3,
    /// Google Cloud Storage's XML API: requests with the bearer token
    /// [`BEARER_TOKEN`](crate::BEARER_TOKEN); clients configured by
    /// [`gcs_client_options`](crate::gcs_client_options).
    Gcs,
}

/// What answers a request once the layer has read it.
#[derive(Clone)]
enum Inner {
    S3(S3Service),
    Gcs,
}

/// An S3 (or Google Cloud Storage) server on 127.0.0.1 backed by memory. Dropping
/// it stops the server.
///
/// S3 requests must be signed (`SigV4`) with [`ACCESS_KEY`](crate::ACCESS_KEY) and
/// [`SECRET_KEY`](crate::SECRET_KEY) and use path-style addressing
/// (`http://127.0.0.1:PORT/bucket/key`); see [`Protocol`] for GCS.
#[derive(Debug)]
pub struct S3Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Starts a server on a free port of 127.0.0.1.
    ///
    /// The server runs on its own thread and tokio runtime, so this works inside and
    /// outside a tokio runtime alike.
    pub fn start() -> S3Server {
        S3Server::start_on(0).expect("binding 127.0.0.1:0 and starting a runtime")
    }

    /// Starts a server on `port` of 127.0.0.1 (`0` picks a free port).
    pub fn start_on(port: u16) -> std::io::Result<S3Server> {
        S3Server::start_with(Protocol::S3, port)
    }

    /// Starts a server speaking Google Cloud Storage's XML API on a free port of
    /// 127.0.0.1: the same store, faults, log and latency as an S3 server.
    pub fn start_gcs() -> S3Server {
        S3Server::start_with(Protocol::Gcs, 0).expect("binding 127.0.0.1:0 and starting a runtime")
    }

    /// Starts a server speaking `protocol` on `port` of 127.0.0.1 (`0` picks a free
    /// port).
    pub fn start_with(protocol: Protocol, port: u16) -> std::io::Result<S3Server> {
        let listener = StdTcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("atlas-s3test")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared::default());
        let service = match protocol {
            Protocol::S3 => {
                let mut builder = S3ServiceBuilder::new(Backend {
                    store: Arc::clone(&shared.store),
                });
                builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                Inner::S3(builder.build())
            }
            Protocol::Gcs => Inner::Gcs,
        };
        let (shutdown, stop) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("atlas-s3test:{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, service, thread_shared, stop));
                // Connection tasks still running are dropped with the runtime.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(S3Server {
            shared,
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a bucket directly (no request, no log entry); a no-op if it exists.
    ///
    /// Panics if `name` is not a valid S3 bucket name (3 to 63 lowercase letters,
    /// digits, dots and hyphens): requests naming it would be refused.
    pub fn create_bucket(&self, name: &str) {
        assert_valid_bucket_name(name);
        self.shared.store.ensure_bucket(name);
    }

    /// Sets the latency added to every request (zero by default): the server waits this
    /// long before handling each request that arrives after the call, so before
    /// answering it.
    pub fn set_latency(&self, per_request: Duration) {
        *self.shared.latency.lock() = per_request;
    }

    /// Queues a fault; it fires on the next `times` matching requests.
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.push(fault);
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// The request log since start or the last [`reset_log`](Self::reset_log), in the
    /// order answers were produced; faulted requests included.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().clone()
    }

    /// Empties the request log.
    pub fn reset_log(&self) {
        self.shared.log.lock().clear();
    }

    /// The current content of an object, read directly.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.shared
            .store
            .get(bucket, key, &crate::store::Conditions::default())
            .ok()
            .map(|object| object.data.to_vec())
    }

    /// The keys of a bucket, sorted (empty if the bucket does not exist).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.shared.store.keys(bucket)
    }

    /// Writes an object directly (no request, no log entry), creating the bucket if
    /// needed; it gets a fresh `ETag` like any write. Panics on an invalid bucket name,
    /// as [`create_bucket`](Self::create_bucket) does.
    pub fn put_object_direct(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        assert_valid_bucket_name(bucket);
        self.shared.store.ensure_bucket(bucket);
        self.shared
            .store
            .put(
                bucket,
                key,
                Bytes::from(bytes),
                &crate::store::Conditions::default(),
            )
            .expect("an unconditional write to an existing bucket succeeds");
    }

    /// The number of multipart uploads begun and neither completed nor aborted.
    pub fn open_multipart_uploads(&self) -> usize {
        self.shared.store.n_open_uploads()
    }
}

fn assert_valid_bucket_name(name: &str) {
    assert!(
        s3s::path::check_bucket_name(name),
        "{name:?} is not a valid S3 bucket name; requests naming it would be refused"
    );
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The receiver is gone only if the server thread already ended.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread was reported there; do not panic in drop.
            let _ = thread.join();
        }
    }
}

/// Accepts connections until `stop` fires.
async fn serve(
    listener: StdTcpListener,
    service: Inner,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("a non-blocking std listener");
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors or a connection reset before accept: back off a little.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Small requests and answers must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let handler = service_fn(move |req| handle(Arc::clone(&shared), service.clone(), req));
            // A connection error (client gone, injected truncation) ends this connection only.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}

/// An S3 error answer that `s3s` did not produce (injected faults).
fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/xml"),
    );
    response
}

/// Reads about half of a body (at least one frame), then gives up on it.
async fn read_half(mut body: Incoming, declared_len: Option<u64>) -> u64 {
    let target = declared_len.map_or(1, |len| (len / 2).max(1));
    let mut n_read = 0;
    while n_read < target {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    n_read += data.len() as u64;
                }
            }
            _ => break,
        }
    }
    n_read
}

/// A request body, read early or not yet.
enum RequestBody {
    Read(Bytes),
    Unread(Incoming),
}

/// Handles one request: latency, faults, the protocol, the log.
async fn handle(
    shared: Arc<Shared>,
    service: Inner,
    req: HttpRequest<Incoming>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let mut target = Target::of(&req);
    let (parts, body) = req.into_parts();
    // `DeleteObjects` names its keys in the body: read it first, so that the log and
    // key-matching faults see them.
    let body = if target.is_bulk_delete() {
        let Ok(collected) = body.collect().await else {
            shared.record(&target, None, (0, 0), 0);
            return Err("the request body could not be read".into());
        };
        let bytes = collected.to_bytes();
        target.key = route::bulk_delete_keys(&bytes);
        RequestBody::Read(bytes)
    } else {
        RequestBody::Unread(body)
    };
    let latency = *shared.latency.lock();
    let fault = shared.faults.take(target.op, &target.key);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(FaultAction::Delay(delay)) = &fault {
        tokio::time::sleep(*delay).await;
    }
    let body = match body {
        RequestBody::Read(bytes) => bytes,
        RequestBody::Unread(body) if matches!(fault, Some(FaultAction::TruncateUpload)) => {
            let declared_len = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok());
            let n_read = read_half(body, declared_len).await;
            shared.record(&target, None, (n_read, 0), 0);
            return Err("upload cut by an injected TruncateUpload fault".into());
        }
        RequestBody::Unread(body) => match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                shared.record(&target, None, (0, 0), 0);
                return Err(err.into());
            }
        },
    };
    let bytes_in = body.len() as u64;
    if let Some(FaultAction::Fail) = fault {
        let response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "injected fault: please reduce your request rate",
        );
        shared.record(&target, None, (bytes_in, response_len(&response)), 503);
        return Ok(response);
    }
    let (parts, body) = match service {
        Inner::S3(service) => {
            let answer = match service
                .call(HttpRequest::from_parts(parts, s3s::Body::from(body)))
                .await
            {
                Ok(answer) => answer,
                Err(err) => {
                    shared.record(&target, None, (bytes_in, 0), 0);
                    return Err(err.into());
                }
            };
            let (parts, body) = answer.into_parts();
            match body.collect().await {
                Ok(collected) => (parts, collected.to_bytes()),
                Err(err) => {
                    shared.record(&target, None, (bytes_in, 0), 0);
                    return Err(err);
                }
            }
        }
        Inner::Gcs => {
            let (parts, body) = gcs::answer(&shared.store, &target, &parts, body).into_parts();
            let Ok(collected) = body.collect().await;
            (parts, collected.to_bytes())
        }
    };
    if let Some(FaultAction::DropResponse) = fault {
        let response = error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "injected fault: the operation was applied but its answer dropped",
        );
        shared.record(&target, None, (bytes_in, response_len(&response)), 500);
        return Ok(response);
    }
    let content_range = parts
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|value| value.to_str().ok());
    shared.record(
        &target,
        content_range,
        (bytes_in, body.len() as u64),
        parts.status.as_u16(),
    );
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn response_len(response: &Response<Full<Bytes>>) -> u64 {
    hyper::body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0)
}
