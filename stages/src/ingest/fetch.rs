//! Fetching sources into the store: bytes are streamed to a temporary file while
//! hashed, then stored once under `blobs/sha256/<ab>/<hash>`. Remote fetches go
//! through `object_store` (HTTP and S3 clients with timeouts and retries with
//! backoff); many run at once, up to a limit.

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
use speechmill_pipeline::store::{
    BLOBS_DIR, StoreLocation, open_location, s3_builder, split_s3_url,
};

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
    let url = url::Url::parse(uri).map_err(|e| format!("invalid_uri: {e}"))?;
    let (key, path) = match url.scheme() {
        "s3" => {
            let (bucket, path) = split_s3_url(uri).map_err(|e| format!("invalid_uri: {e}"))?;
            (format!("s3://{bucket}"), path)
        }
        "http" | "https" => {
            if url.query().is_some() {
                return Err(
                    "unsupported_uri: URLs with a query string are not supported yet".to_string(),
                );
            }
            let origin = url.origin().ascii_serialization();
            let path =
                ObjectPath::from_url_path(url.path()).map_err(|e| format!("invalid_uri: {e}"))?;
            (origin, path)
        }
        other => return Err(format!("unsupported_uri: scheme {other}")),
    };
    let cache_key = format!("{key}|{}|{}", config.timeout_ms, config.retries);
    if let Some(found) = CLIENTS.lock().ok().and_then(|m| m.get(&cache_key).cloned()) {
        return Ok((found, path));
    }
    let client: Arc<dyn ObjectStore> = if let Some(bucket) = key.strip_prefix("s3://") {
        Arc::new(
            s3_builder(bucket)
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
                })?,
        )
    } else {
        Arc::new(
            HttpBuilder::new()
                .with_url(&key)
                .with_client_options(client_options(config))
                .with_retry(retry_config(config))
                .build()
                .map_err(|e| format!("fetch_failed: {}", one_line(&e.to_string())))?,
        )
    };
    if let Ok(mut m) = CLIENTS.lock() {
        m.insert(cache_key, client.clone());
    }
    Ok((client, path))
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
