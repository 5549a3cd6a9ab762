//! Fetching sources into the store: bytes are streamed to a temporary file while
//! hashed, then stored once under `blobs/sha256/<ab>/<hash>`. Remote fetches go
//! through `object_store` (HTTP and S3 clients with timeouts and retries with
//! backoff); many run at once, up to a limit.
//!
//! URIs: `s3://bucket/key` takes the key verbatim (spaces, `%`, `#`, `?`, `+`,
//! non-ASCII: what S3 lists is what is fetched; no URL decoding). An http(s) URL may
//! carry credentials (`https://user:token@host/…`): they are sent as HTTP Basic
//! auth and never appear in what is stored, logged or returned as a reason
//! ([`redact_credentials`] is the stored form).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures::StreamExt;
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use speechmill_pipeline::error::one_line;
use speechmill_pipeline::store::{BLOBS_DIR, StoreLocation, open_location, s3_builder};

/// How to fetch; travels to the UDF as a JSON literal so plans stay self-contained.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct FetchConfig {
    pub store: String,
    pub max_bytes: u64,
    pub concurrency: usize,
    pub timeout_ms: u64,
    pub retries: usize,
}

/// A fetched source, or why it could not be.
#[derive(Clone, Debug, PartialEq)]
pub enum Fetched {
    Stored {
        source_id: String,
        blob: String,
        size_bytes: u64,
    },
    Rejected(String),
}

/// `uri` with any credentials (`user:token@` before the host) replaced by `***`, so
/// it can be stored, logged and shown: `https://***@host/a.wav`. Only the authority
/// (between `://` and the next `/`, `?` or `#`) is looked at, so an `@` in a path or
/// an S3 key is left alone.
pub fn redact_credentials(uri: &str) -> Cow<'_, str> {
    let Some(scheme_end) = uri.find("://") else {
        return Cow::Borrowed(uri);
    };
    let rest = &uri[scheme_end + 3..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        None => Cow::Borrowed(uri),
        Some(at) => Cow::Owned(format!("{}***{}", &uri[..scheme_end + 3], &rest[at..])),
    }
}

/// Splits `s3://bucket/key` into the bucket and the key, verbatim: S3 keys may
/// hold any character, so nothing is URL-decoded and `#` or `?` are part of the key.
pub fn split_s3_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| format!("invalid_uri: not an s3:// URI: {}", redact_credentials(uri)))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("invalid_uri: missing bucket name (s3://BUCKET/key)".to_string());
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// The object-store path of a verbatim S3 key (the form S3 listings return).
pub fn s3_key_path(key: &str) -> Result<ObjectPath, String> {
    ObjectPath::parse(key).map_err(|e| format!("invalid_uri: bad S3 key: {e}"))
}

/// The store-relative key of a blob.
pub fn blob_key(sha256_hex: &str) -> String {
    format!("{BLOBS_DIR}/sha256/{}/{sha256_hex}", &sha256_hex[..2])
}

/// Fetches many URIs, `config.concurrency` at a time, keeping their order.
pub async fn fetch_all(uris: Vec<Option<String>>, config: &FetchConfig) -> Vec<Option<Fetched>> {
    let store = match open_location(&config.store) {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("store_unavailable: {e}");
            return uris
                .iter()
                .map(|u| u.as_ref().map(|_| Fetched::Rejected(reason.clone())))
                .collect();
        }
    };
    futures::stream::iter(uris)
        .map(|uri| {
            let store = store.clone();
            async move {
                match uri {
                    None => None,
                    Some(uri) => Some(fetch_one(&uri, config, &store).await),
                }
            }
        })
        .buffered(config.concurrency.max(1))
        .collect()
        .await
}

async fn fetch_one(uri: &str, config: &FetchConfig, store: &StoreLocation) -> Fetched {
    match fetch_to_blob(uri, config, store).await {
        Ok(f) => f,
        Err(reason) => Fetched::Rejected(reason),
    }
}

async fn fetch_to_blob(
    uri: &str,
    config: &FetchConfig,
    store: &StoreLocation,
) -> Result<Fetched, String> {
    // Local sources are hashed in place; remote ones are downloaded to a temp file.
    let (local_path, _temp) = if uri.contains("://") {
        let temp = download(uri, config).await?;
        (temp.path().to_path_buf(), Some(temp))
    } else {
        let meta = tokio::fs::metadata(uri)
            .await
            .map_err(|e| format!("fetch_failed: {e}"))?;
        check_size(meta.len(), config.max_bytes)?;
        (PathBuf::from(uri), None)
    };
    let (sha, size) = hash_file(&local_path).await?;
    check_size(size, config.max_bytes)?;
    let key = blob_key(&sha);
    put_blob(store, &key, &local_path).await?;
    // One line per fetched source, from the process that fetched it (on a cluster,
    // an executor): `SPEECHMILL_LOG=speechmill::fetch=debug` shows who did the work.
    tracing::debug!(
        target: "speechmill::fetch",
        pid = std::process::id(),
        uri = %redact_credentials(uri),
        bytes = size,
        "fetched"
    );
    Ok(Fetched::Stored {
        source_id: sha,
        blob: key,
        size_bytes: size,
    })
}

fn check_size(size: u64, max: u64) -> Result<(), String> {
    if size == 0 {
        return Err("empty: zero bytes".to_string());
    }
    if size > max {
        return Err(format!("too_large: {size} bytes > max_bytes {max}"));
    }
    Ok(())
}

async fn hash_file(path: &Path) -> Result<(String, u64), String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(|e| format!("fetch_failed: {e}"))?;
        let mut hasher = Sha256::new();
        let size =
            std::io::copy(&mut file, &mut hasher).map_err(|e| format!("fetch_failed: {e}"))?;
        Ok((hex::encode(hasher.finalize()), size))
    })
    .await
    .map_err(|e| format!("fetch_failed: {e}"))?
}

/// Stores a file under `key` unless a blob with that hash is there already.
async fn put_blob(store: &StoreLocation, key: &str, file: &Path) -> Result<(), String> {
    let target = key
        .split('/')
        .fold(store.prefix.clone(), |p, part| p.join(part));
    if let Some(root) = &store.local_root {
        // Local store: copy to a temp name beside the blob and rename, so a crash
        // never leaves a half-written blob under its final name.
        let dest = root.join(key);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            return Ok(());
        }
        let dir = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.clone());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("store_failed: {e}"))?;
        let temp = dir.join(format!(".tmp-{}-{}", std::process::id(), unique()));
        tokio::fs::copy(file, &temp)
            .await
            .map_err(|e| format!("store_failed: {e}"))?;
        tokio::fs::rename(&temp, &dest)
            .await
            .map_err(|e| format!("store_failed: {e}"))?;
        return Ok(());
    }
    if store.object_store.head(&target).await.is_ok() {
        return Ok(());
    }
    upload(&store.object_store, &target, file).await
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Streams a file into the object store (multipart for large files).
async fn upload(
    store: &Arc<dyn ObjectStore>,
    target: &ObjectPath,
    file: &Path,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut writer = object_store::buffered::BufWriter::new(store.clone(), target.clone());
    let mut reader = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("store_failed: {e}"))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| format!("store_failed: {e}"))?;
        if n == 0 {
            break;
        }
        use tokio::io::AsyncWriteExt;
        writer
            .write_all(&buf[..n])
            .await
            .map_err(|e| format!("store_failed: {e}"))?;
    }
    use tokio::io::AsyncWriteExt;
    writer
        .shutdown()
        .await
        .map_err(|e| format!("store_failed: {e}"))?;
    Ok(())
}

/// Clients per (scheme, host, settings), so connections are reused across rows.
static CLIENTS: LazyLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn client_options(config: &FetchConfig) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(true)
        .with_connect_timeout(Duration::from_millis(config.timeout_ms.min(30_000)))
        .with_timeout(Duration::from_millis(config.timeout_ms))
}

fn retry_config(config: &FetchConfig) -> RetryConfig {
    RetryConfig {
        max_retries: config.retries,
        retry_timeout: Duration::from_millis(
            config.timeout_ms.saturating_mul(config.retries as u64 + 1),
        ),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
    }
}

/// The object store that serves `uri` and the object's path in it.
fn remote(uri: &str, config: &FetchConfig) -> Result<(Arc<dyn ObjectStore>, ObjectPath), String> {
    if uri.starts_with("s3://") {
        let (bucket, key) = split_s3_uri(uri)?;
        let path = s3_key_path(&key)?;
        let cache_key = format!("s3://{bucket}|{}|{}", config.timeout_ms, config.retries);
        let client = cached_client(cache_key, || {
            let client = s3_builder(&bucket)
                .with_retry(retry_config(config))
                .with_client_options(
                    client_options(config).with_allow_http(
                        std::env::var("AWS_ALLOW_HTTP")
                            .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
                    ),
                )
                .build()
                .map_err(|e| {
                    format!(
                        "fetch_failed: cannot configure S3: {}",
                        one_line(&e.to_string())
                    )
                })?;
            Ok(Arc::new(client))
        })?;
        return Ok((client, path));
    }
    // Never echo the URL itself: it may hold credentials.
    let url = url::Url::parse(uri).map_err(|e| format!("invalid_uri: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("unsupported_uri: scheme {other}")),
    }
    if url.query().is_some() {
        return Err("unsupported_uri: URLs with a query string are not supported yet".to_string());
    }
    // The client talks to the origin without userinfo (so no error message can
    // carry it); credentials go in an Authorization header instead.
    let origin = url.origin().ascii_serialization();
    let path = ObjectPath::from_url_path(url.path()).map_err(|e| format!("invalid_uri: {e}"))?;
    let authorization = basic_authorization(&url);
    // Clients are per origin and credentials (kept in memory only, never logged).
    let cache_key = format!(
        "{origin}|{}|{}|{}",
        config.timeout_ms,
        config.retries,
        authorization.as_deref().unwrap_or("")
    );
    let client = cached_client(cache_key, || {
        let mut options = client_options(config);
        if let Some(value) = &authorization {
            let headers: HashMap<String, String> =
                HashMap::from([("authorization".to_string(), value.clone())]);
            // (`HeaderMap` is `http`'s, reached through object_store's signature.)
            options = options.with_default_headers((&headers).try_into().map_err(|_| {
                "invalid_uri: credentials that cannot be sent in a header".to_string()
            })?);
        }
        let client = HttpBuilder::new()
            .with_url(&origin)
            .with_client_options(options)
            .with_retry(retry_config(config))
            .build()
            .map_err(|e| format!("fetch_failed: {}", one_line(&e.to_string())))?;
        Ok(Arc::new(client))
    })?;
    Ok((client, path))
}

fn cached_client(
    key: String,
    build: impl FnOnce() -> Result<Arc<dyn ObjectStore>, String>,
) -> Result<Arc<dyn ObjectStore>, String> {
    if let Some(found) = CLIENTS.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(found);
    }
    let client = build()?;
    if let Ok(mut m) = CLIENTS.lock() {
        m.insert(key, client.clone());
    }
    Ok(client)
}

/// `Basic base64(user:password)` from a URL's userinfo (percent-decoded), if any.
fn basic_authorization(url: &url::Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| String::from_utf8_lossy(&percent_decode(s)).into_owned();
    let user = decode(url.username());
    let password = url.password().map(decode).unwrap_or_default();
    Some(format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    ))
}

/// `%XX` escapes decoded; anything else (a stray `%`) kept as is.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), for the Basic auth header.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What identifies the current version of a remote source, from a HEAD request:
/// size, ETag and Last-Modified. A source that cannot be reached gets a version
/// naming the failure, so it changes once the source appears.
pub async fn remote_version(uri: &str, config: &FetchConfig) -> String {
    let (client, path) = match remote(uri, config) {
        Ok(found) => found,
        Err(reason) => return format!("unusable: {reason}"),
    };
    match client.head(&path).await {
        Ok(meta) => format!(
            "size={};etag={};last_modified={}",
            meta.size,
            meta.e_tag.unwrap_or_default(),
            meta.last_modified.to_rfc3339()
        ),
        Err(object_store::Error::NotFound { .. }) => "head_failed: not found".to_string(),
        Err(_) => "head_failed".to_string(),
    }
}

/// Downloads a remote object to a temp file, enforcing the size limit as it streams.
async fn download(uri: &str, config: &FetchConfig) -> Result<tempfile::NamedTempFile, String> {
    let (client, path) = remote(uri, config)?;
    let got = client
        .get(&path)
        .await
        .map_err(|e| fetch_error(&e, config))?;
    check_size(got.meta.size, config.max_bytes).or_else(|e| {
        // Some servers report no length; the streamed count below decides then.
        if got.meta.size == 0 { Ok(()) } else { Err(e) }
    })?;
    let mut temp =
        tempfile::NamedTempFile::new().map_err(|e| format!("fetch_failed: temp file: {e}"))?;
    let mut stream = got.into_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fetch_error(&e, config))?;
        total += chunk.len() as u64;
        if total > config.max_bytes {
            return Err(format!(
                "too_large: more than max_bytes {}",
                config.max_bytes
            ));
        }
        temp.write_all(&chunk)
            .map_err(|e| format!("fetch_failed: temp file: {e}"))?;
    }
    temp.flush()
        .map_err(|e| format!("fetch_failed: temp file: {e}"))?;
    Ok(temp)
}

fn fetch_error(e: &object_store::Error, config: &FetchConfig) -> String {
    match e {
        object_store::Error::NotFound { .. } => "fetch_failed: not found".to_string(),
        other => format!(
            "fetch_failed after {} retries: {}",
            config.retries,
            one_line(&other.to_string())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_from_the_authority_only() {
        assert_eq!(
            redact_credentials("https://user:s3cret@example.org/a/b.wav"),
            "https://***@example.org/a/b.wav"
        );
        assert_eq!(
            redact_credentials("http://token@127.0.0.1:8080/x.mp3"),
            "http://***@127.0.0.1:8080/x.mp3"
        );
        // A password holding `@` is still redacted whole.
        assert_eq!(
            redact_credentials("https://u:p@ss@host/x"),
            "https://***@host/x"
        );
        // `@` after the authority (a path, an S3 key) is not a credential.
        for unchanged in [
            "https://host/people/a@b.wav",
            "s3://bucket/user@example.com/clip.wav",
            "/data/a@b.wav",
            "https://host?q=a@b",
        ] {
            assert_eq!(redact_credentials(unchanged), unchanged);
        }
    }

    #[test]
    fn s3_uris_keep_every_character_of_the_key() {
        for key in [
            "odd/with space.wav",
            "odd/100%.wav",
            "odd/a#b.wav",
            "odd/q?x=1.wav",
            "odd/plus+sign.wav",
            "odd/ünïcødé-日本.wav",
            "odd/%20literal.wav",
        ] {
            let (bucket, got) = split_s3_uri(&format!("s3://bucket/{key}")).unwrap();
            assert_eq!((bucket.as_str(), got.as_str()), ("bucket", key));
            // The object path is the key itself, as an S3 listing returns it.
            assert_eq!(s3_key_path(key).unwrap().as_ref(), key);
        }
        assert!(split_s3_uri("s3:///key").is_err());
    }

    #[test]
    fn basic_auth_comes_from_the_decoded_userinfo() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        let url = url::Url::parse("https://Aladdin:open%20sesame@host/x").unwrap();
        assert_eq!(
            basic_authorization(&url).unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        let plain = url::Url::parse("https://host/x").unwrap();
        assert_eq!(basic_authorization(&plain), None);
        assert_eq!(percent_decode("a%2Bb%zz%+1%"), b"a+b%zz%+1%");
    }

    #[tokio::test]
    async fn fetch_errors_never_name_the_credentials() {
        let store = tempfile::tempdir().unwrap();
        let config = FetchConfig {
            store: store.path().display().to_string(),
            max_bytes: 1 << 20,
            concurrency: 1,
            timeout_ms: 2_000,
            retries: 0,
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Nothing listens on `port` once the listener is dropped.
        let uri = format!("http://user:topsecret@127.0.0.1:{port}/a.wav");
        let got = fetch_all(vec![Some(uri.clone())], &config).await;
        match &got[0] {
            Some(Fetched::Rejected(reason)) => {
                assert!(reason.starts_with("fetch_failed"), "{reason}");
                assert!(!reason.contains("topsecret"), "{reason}");
            }
            other => panic!("expected a reject, got {other:?}"),
        }
        let version = remote_version(&uri, &config).await;
        assert!(version.starts_with("head_failed"), "{version}");
        assert!(!version.contains("topsecret"));
    }
}
