//! The three kinds of server, behind one trait of four operations on names such as
//! `cas/<digest>` and `ac/<key>`: stream an object, check existence, put bytes, and put a file
//! streamed from disk. Memory stays bounded whatever the blob size: downloads are chunk
//! streams, and uploads above `WHOLE_UPLOAD_MAX` are sent in pieces.

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH};
use reqwest::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;
use tokio_util::io::ReaderStream;

use super::{local_io, RemoteConfig, RemoteError};

/// Blobs up to this size are read into memory and sent in one request; larger ones go in
/// pieces of this size (S3 multipart wants at least 5 MiB a part; Redis `APPEND`s). One such
/// buffer per transfer in flight is the memory bound.
const WHOLE_UPLOAD_MAX: u64 = 8 << 20;
const PIECE: usize = 8 << 20;
/// Read buffer for streamed HTTP uploads.
const STREAM_CHUNK: usize = 256 << 10;
/// Redis values are read in ranges of this size, so a large blob never sits whole in memory
/// (nor in one reply buffer on the server).
const REDIS_RANGE: usize = 4 << 20;

pub type ByteStream = BoxStream<'static, Result<Bytes, RemoteError>>;

/// One kind of server: four operations on object names. A new kind (a REAPI content store,
/// say) is one more implementation; the caller times, retries and verifies every answer.
pub trait Backend: Send + Sync {
    /// An object as a stream of chunks, `None` when absent. Nothing here bounds its size or
    /// its pace: the caller times each chunk, and caps what it keeps.
    fn get_stream<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ByteStream>, RemoteError>>;

    fn exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, RemoteError>>;

    fn put_bytes<'a>(
        &'a self,
        name: &'a str,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// A file too large to hold in memory (over `WHOLE_UPLOAD_MAX`), sent in pieces.
    fn put_large<'a>(
        &'a self,
        name: &'a str,
        path: &'a Path,
        size: u64,
    ) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// A file, whole when small, else in pieces (`put_large`).
    fn put_file<'a>(
        &'a self,
        name: &'a str,
        path: &'a Path,
        size: u64,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            if size <= WHOLE_UPLOAD_MAX {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|err| local_io(path, err))?;
                return self.put_bytes(name, bytes.into()).await;
            }
            self.put_large(name, path, size).await
        })
    }
}

/// The backend a remote URL names, by its scheme.
pub fn open(config: &RemoteConfig) -> Result<Box<dyn Backend>, RemoteError> {
    let url = config.url.trim();
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => Ok(Box::new(Http::new(url, config)?)),
        Some("s3") => Ok(Box::new(S3::new(url, config)?)),
        Some("redis" | "rediss") => Ok(Box::new(Redis::new(url, config)?)),
        _ => Err(RemoteError::BadUrl(url.to_owned())),
    }
}

/// The `Backend` of a type with the operations as inherent async methods; `$large` sends a
/// large file.
macro_rules! backend {
    ($kind:ty, |$this:ident, $name:ident, $path:ident, $size:ident| $large:expr) => {
        impl Backend for $kind {
            fn get_stream<'a>(
                &'a self,
                name: &'a str,
            ) -> BoxFuture<'a, Result<Option<ByteStream>, RemoteError>> {
                Box::pin(<$kind>::get_stream(self, name))
            }
            fn exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, RemoteError>> {
                Box::pin(<$kind>::exists(self, name))
            }
            fn put_bytes<'a>(
                &'a self,
                name: &'a str,
                bytes: Bytes,
            ) -> BoxFuture<'a, Result<(), RemoteError>> {
                Box::pin(<$kind>::put_bytes(self, name, bytes))
            }
            fn put_large<'a>(
                &'a self,
                name: &'a str,
                path: &'a Path,
                size: u64,
            ) -> BoxFuture<'a, Result<(), RemoteError>> {
                let ($this, $name, $path, $size) = (self, name, path, size);
                Box::pin($large)
            }
        }
    };
}

backend!(Http, |http, name, path, size| http
    .put_stream(name, path, size));
backend!(S3, |s3, name, path, _size| s3.put_pieces(name, path));
backend!(Redis, |redis, name, path, _size| redis
    .put_pieces(name, path));

/// `path` read `PIECE` bytes at a time.
struct Pieces<'a> {
    path: &'a Path,
    file: tokio::fs::File,
    done: bool,
}

impl<'a> Pieces<'a> {
    async fn open(path: &'a Path) -> Result<Pieces<'a>, RemoteError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|err| local_io(path, err))?;
        Ok(Pieces {
            path,
            file,
            done: false,
        })
    }

    async fn next(&mut self) -> Result<Option<Bytes>, RemoteError> {
        if self.done {
            return Ok(None);
        }
        let mut piece = Vec::with_capacity(PIECE);
        // `take` + `read_to_end` fills a whole piece unless the file ends first.
        let read = (&mut self.file)
            .take(PIECE as u64)
            .read_to_end(&mut piece)
            .await
            .map_err(|err| local_io(self.path, err))?;
        self.done = read < PIECE;
        Ok((read > 0).then(|| piece.into()))
    }
}

// --- HTTP / WebDAV ---------------------------------------------------------------------------

pub struct Http {
    client: reqwest::Client,
    base: String,
    authorization: Option<HeaderValue>,
}

impl Http {
    fn new(url: &str, config: &RemoteConfig) -> Result<Http, RemoteError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|err| RemoteError::Config(format!("{url}: {err}")))?;
        let mut authorization = None;
        if let Some(token) = &config.bearer_token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                RemoteError::Config("the token holds characters a header cannot".to_owned())
            })?;
            authorization = Some(sensitive(value));
        } else if !parsed.username().is_empty() {
            // user:password@ in the URL: basic auth, kept out of the request line.
            let user = percent_decode(parsed.username());
            let password = parsed.password().map(percent_decode).unwrap_or_default();
            let encoded = BASE64.encode(format!("{user}:{password}"));
            let value = HeaderValue::from_str(&format!("Basic {encoded}"))
                .map_err(|_| RemoteError::Config("bad user name or password".to_owned()))?;
            authorization = Some(sensitive(value));
        }
        let mut clean = parsed.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            .build()
            .map_err(|err| RemoteError::Config(err.to_string()))?;
        Ok(Http {
            client,
            base: clean.as_str().trim_end_matches('/').to_owned(),
            authorization,
        })
    }

    fn request(&self, method: reqwest::Method, name: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}/{name}", self.base));
        match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        name: &str,
    ) -> Result<Option<reqwest::Response>, RemoteError> {
        let response = request.send().await.map_err(|err| transport(&err))?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(response)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RemoteError::Denied(format!(
                "HTTP {} for {name}",
                response.status().as_u16()
            ))),
            status => Err(RemoteError::Status {
                status: status.as_u16(),
                what: name.to_owned(),
            }),
        }
    }

    async fn get_stream(&self, name: &str) -> Result<Option<ByteStream>, RemoteError> {
        Ok(self
            .send(self.request(reqwest::Method::GET, name), name)
            .await?
            .map(|response| {
                response
                    .bytes_stream()
                    .map_err(|err| transport(&err))
                    .boxed()
            }))
    }

    async fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        Ok(self
            .send(self.request(reqwest::Method::HEAD, name), name)
            .await?
            .is_some())
    }

    async fn put_bytes(&self, name: &str, bytes: Bytes) -> Result<(), RemoteError> {
        // Always a length, even 0: nginx refuses a PUT without one ("body must be in a file").
        let request = self
            .request(reqwest::Method::PUT, name)
            .header(CONTENT_LENGTH, bytes.len())
            .body(bytes);
        self.expect_stored(request, name).await
    }

    async fn put_stream(&self, name: &str, path: &Path, size: u64) -> Result<(), RemoteError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|err| local_io(path, err))?;
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, STREAM_CHUNK));
        // With a length the body goes plainly, not chunked: WebDAV servers want to know it.
        let request = self
            .request(reqwest::Method::PUT, name)
            .header(CONTENT_LENGTH, size)
            .body(body);
        self.expect_stored(request, name).await
    }

    async fn expect_stored(
        &self,
        request: reqwest::RequestBuilder,
        name: &str,
    ) -> Result<(), RemoteError> {
        match self.send(request, name).await? {
            Some(_) => Ok(()),
            // A PUT answered 404: a WebDAV server without `create_full_put_path`.
            None => Err(RemoteError::Status {
                status: 404,
                what: format!("PUT {name} (does the server create folders on PUT?)"),
            }),
        }
    }
}

fn sensitive(mut value: HeaderValue) -> HeaderValue {
    // Kept out of debug output and logs.
    value.set_sensitive(true);
    value
}

fn transport(err: &reqwest::Error) -> RemoteError {
    // The whole chain: "error sending request" alone does not say "connection refused".
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    RemoteError::Transport(message)
}

/// A URL's user or password as typed (`p%40ss` is `p@ss`); bytes that are not UTF-8 are
/// replaced, as a header could not carry them anyway.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

// --- S3 ------------------------------------------------------------------------------------

pub struct S3 {
    store: Arc<AmazonS3>,
    prefix: String,
}

impl S3 {
    /// `s3://bucket/prefix`; credentials, region and endpoint from the usual `AWS_*` variables
    /// (and the AWS credential chain), the endpoint and region of the config winning.
    fn new(url: &str, config: &RemoteConfig) -> Result<S3, RemoteError> {
        let rest = &url["s3://".len()..];
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(RemoteError::Config(format!(
                "{url}: no bucket (s3://BUCKET/PREFIX)"
            )));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = config
            .s3_endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok());
        let mut options = ClientOptions::new()
            .with_connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            // Our own timeouts bound each request; this one only stops a transfer that hangs.
            .with_timeout(std::time::Duration::from_secs(3600));
        if let Some(endpoint) = endpoint {
            if endpoint.starts_with("http://") {
                options = options.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.s3_region {
            builder = builder.with_region(region);
        }
        let store = builder
            .with_client_options(options)
            // Retries are ours (`Shared::attempt`), the same for every backend.
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .build()
            .map_err(|err| RemoteError::Config(err.to_string()))?;
        Ok(S3 {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    async fn get_stream(&self, name: &str) -> Result<Option<ByteStream>, RemoteError> {
        match self.store.get(&self.path(name)).await {
            Ok(result) => Ok(Some(
                result.into_stream().map_err(|err| s3_error(&err)).boxed(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(s3_error(&err)),
        }
    }

    async fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        match self.store.head(&self.path(name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(s3_error(&err)),
        }
    }

    async fn put_bytes(&self, name: &str, bytes: Bytes) -> Result<(), RemoteError> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map_err(|err| s3_error(&err))?;
        Ok(())
    }

    /// Multipart upload, one part in flight: memory is one part whatever the blob size.
    async fn put_pieces(&self, name: &str, path: &Path) -> Result<(), RemoteError> {
        let mut pieces = Pieces::open(path).await?;
        let upload = self
            .store
            .put_multipart(&self.path(name))
            .await
            .map_err(|err| s3_error(&err))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PIECE);
        loop {
            let piece = match pieces.next().await {
                Ok(Some(piece)) => piece,
                Ok(None) => break,
                Err(err) => {
                    // An unfinished upload holds storage on the server until aborted.
                    let _ = writer.abort().await;
                    return Err(err);
                }
            };
            writer
                .wait_for_capacity(1)
                .await
                .map_err(|err| s3_error(&err))?;
            writer.put(piece);
        }
        writer.finish().await.map_err(|err| s3_error(&err))?;
        Ok(())
    }
}

fn s3_error(err: &object_store::Error) -> RemoteError {
    let message = err.to_string();
    // object_store folds the HTTP status into its messages; 401/403 will not improve on retry.
    if message.contains("403 Forbidden")
        || message.contains("401 Unauthorized")
        || matches!(
            err,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
    {
        RemoteError::Denied(message)
    } else {
        RemoteError::Transport(message)
    }
}

// --- Redis ---------------------------------------------------------------------------------

pub struct Redis {
    client: redis::Client,
    /// Made on first use, so a configured but dead server costs nothing until then.
    connection: OnceCell<MultiplexedConnection>,
    config: AsyncConnectionConfig,
}

/// Keys are `once:cas:<digest>` and `once:ac:<key>`, so a Redis shared with other data keeps
/// them apart and `SCAN once:*` finds them.
const REDIS_PREFIX: &str = "once:";

impl Redis {
    fn new(url: &str, config: &RemoteConfig) -> Result<Redis, RemoteError> {
        let client =
            redis::Client::open(url).map_err(|err| RemoteError::Config(format!("{url}: {err}")))?;
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            .set_response_timeout(config.timeout);
        Ok(Redis {
            client,
            connection: OnceCell::new(),
            config: connection_config,
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RemoteError> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                self.client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
                    .map_err(|err| redis_error(&err))
            })
            .await?;
        // Cheap: a handle onto the one multiplexed connection.
        Ok(connection.clone())
    }

    fn key(name: &str) -> String {
        format!("{REDIS_PREFIX}{}", name.replace('/', ":"))
    }

    /// `GETRANGE` by `REDIS_RANGE`: the value never sits whole in memory on either side. The
    /// first range comes in the same round trip as the existence check, so an entry (a few
    /// kilobytes) costs one.
    async fn get_stream(&self, name: &str) -> Result<Option<ByteStream>, RemoteError> {
        let mut connection = self.connection().await?;
        let key = Self::key(name);
        let (exists, length, first): (bool, usize, Vec<u8>) = redis::pipe()
            .cmd("EXISTS")
            .arg(&key)
            .cmd("STRLEN")
            .arg(&key)
            .cmd("GETRANGE")
            .arg(&key)
            .arg(0)
            .arg(REDIS_RANGE - 1)
            .query_async(&mut connection)
            .await
            .map_err(|err| redis_error(&err))?;
        if !exists {
            return Ok(None);
        }
        let ranges = (1..length.div_ceil(REDIS_RANGE))
            .map(move |i| (i * REDIS_RANGE, ((i + 1) * REDIS_RANGE).min(length) - 1));
        let rest = futures::stream::iter(ranges).then(move |(start, end)| {
            let mut connection = connection.clone();
            let key = key.clone();
            async move {
                let piece: Vec<u8> = redis::cmd("GETRANGE")
                    .arg(&key)
                    .arg(start)
                    .arg(end)
                    .query_async(&mut connection)
                    .await
                    .map_err(|err| redis_error(&err))?;
                Ok(Bytes::from(piece))
            }
        });
        let first = futures::stream::once(futures::future::ready(Ok(Bytes::from(first))));
        Ok(Some(first.chain(rest).boxed()))
    }

    async fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        let mut connection = self.connection().await?;
        redis::cmd("EXISTS")
            .arg(Self::key(name))
            .query_async(&mut connection)
            .await
            .map_err(|err| redis_error(&err))
    }

    async fn put_bytes(&self, name: &str, bytes: Bytes) -> Result<(), RemoteError> {
        let mut connection = self.connection().await?;
        redis::cmd("SET")
            .arg(Self::key(name))
            .arg(bytes.as_ref())
            .query_async::<()>(&mut connection)
            .await
            .map_err(|err| redis_error(&err))
    }

    /// `APPEND` piece by piece to a temporary key, then `RENAME` it into place, so a reader
    /// never sees half a blob.
    async fn put_pieces(&self, name: &str, path: &Path) -> Result<(), RemoteError> {
        let connection = self.connection().await?;
        let key = Self::key(name);
        let temp = format!("{key}:partial:{}:{}", std::process::id(), upload_number());
        let mut connection = connection;
        let mut pieces = Pieces::open(path).await?;
        loop {
            let piece = match pieces.next().await {
                Ok(Some(piece)) => piece,
                Ok(None) => break,
                Err(err) => {
                    let _: Result<(), _> = redis::cmd("DEL")
                        .arg(&temp)
                        .query_async(&mut connection)
                        .await;
                    return Err(err);
                }
            };
            redis::cmd("APPEND")
                .arg(&temp)
                .arg(piece.as_ref())
                .query_async::<()>(&mut connection)
                .await
                .map_err(|err| redis_error(&err))?;
        }
        redis::cmd("RENAME")
            .arg(&temp)
            .arg(&key)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|err| redis_error(&err))
    }
}

/// Distinct per upload in this process, so two uploads of one blob never share a partial key.
fn upload_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn redis_error(err: &redis::RedisError) -> RemoteError {
    if matches!(err.kind(), redis::ErrorKind::AuthenticationFailed) || err.code() == Some("NOPERM")
    {
        RemoteError::Denied(err.to_string())
    } else {
        RemoteError::Transport(err.to_string())
    }
}
