//! The run store: where nodes commit their Parquet output, and where ingested
//! source bytes live, content-addressed. A local directory or `s3://bucket/prefix`,
//! both through `object_store`, so local and S3 are one code path.
//!
//! Layout under the store root:
//! ```text
//! blobs/sha256/ab/abcdef…            source bytes, stored once
//! <node>/<fingerprint>/data/part-00000-<token>.parquet     one per task that had rows
//! <node>/<fingerprint>/rejects/part-00000-<token>.parquet
//! <node>/<fingerprint>/_COMMITTED.json   written last, lists every part: the output
//!                                        is visible only then
//! <node>/CURRENT.json                    the node's latest committed fingerprint
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result, one_line};

/// Name of the marker that commits a node's output.
pub const COMMIT_MARKER: &str = "_COMMITTED.json";
const CURRENT: &str = "CURRENT.json";
/// Top-level folder of content-addressed source bytes.
pub const BLOBS_DIR: &str = "blobs";

/// An opened object store plus the root of speechmill's files in it.
#[derive(Clone, Debug)]
pub struct StoreLocation {
    /// The store root as the user wrote it, made absolute (`/abs/dir` or `s3://b/p`).
    pub display: String,
    /// The URL DataFusion knows the object store by (`file:///` or `s3://bucket`).
    pub base_url: Url,
    pub object_store: Arc<dyn ObjectStore>,
    /// Path of the root inside the object store.
    pub prefix: Path,
    /// Where the root is on the local disk, for a local store.
    pub local_root: Option<PathBuf>,
}

static OPENED: LazyLock<Mutex<HashMap<String, StoreLocation>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Opens a local directory (created if missing) or an `s3://bucket/prefix`.
/// S3 settings come from the standard AWS variables (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`).
/// Opened stores are cached per process, so UDFs can reopen the store by URL cheaply.
pub fn open_location(spec: &str) -> Result<StoreLocation> {
    if let Some(found) = OPENED.lock().ok().and_then(|m| m.get(spec).cloned()) {
        return Ok(found);
    }
    let location = if spec.starts_with("s3://") {
        open_s3(spec)?
    } else if let Some(rest) = spec.strip_prefix("file://") {
        open_local(rest)?
    } else if spec.contains("://") {
        return Err(Error::Store(format!(
            "{spec}: unsupported store (use a local directory or s3://bucket/prefix)"
        )));
    } else {
        open_local(spec)?
    };
    if let Ok(mut m) = OPENED.lock() {
        m.insert(spec.to_string(), location.clone());
        m.insert(location.display.clone(), location.clone());
    }
    Ok(location)
}

fn open_local(dir: &str) -> Result<StoreLocation> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Store(format!("{dir}: cannot create store directory: {e}")))?;
    let abs = std::fs::canonicalize(dir)
        .map_err(|e| Error::Store(format!("{dir}: cannot open store directory: {e}")))?;
    let prefix = Path::from_absolute_path(&abs)
        .map_err(|e| Error::Store(format!("{dir}: not a usable path: {e}")))?;
    Ok(StoreLocation {
        display: abs.display().to_string(),
        base_url: Url::parse("file:///").map_err(|e| Error::Store(e.to_string()))?,
        object_store: Arc::new(LocalFileSystem::new()),
        prefix,
        local_root: Some(abs),
    })
}

/// Client options shared by every S3 client speechmill makes.
pub fn s3_builder(bucket: &str) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        builder = builder.with_region("us-east-1");
    }
    builder
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(env_flag("AWS_ALLOW_HTTP"))
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(300)),
        )
        .with_retry(RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        })
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// Splits `s3://bucket/some/prefix` into bucket and prefix.
pub fn split_s3_url(spec: &str) -> Result<(String, Path)> {
    let url =
        Url::parse(spec).map_err(|e| Error::Store(format!("{spec}: not a valid URL: {e}")))?;
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::Store(format!("{spec}: missing bucket name (s3://BUCKET/prefix)")))?
        .to_string();
    let prefix = Path::from_url_path(url.path().trim_matches('/'))
        .map_err(|e| Error::Store(format!("{spec}: bad prefix: {e}")))?;
    Ok((bucket, prefix))
}

fn open_s3(spec: &str) -> Result<StoreLocation> {
    let (bucket, prefix) = split_s3_url(spec)?;
    let store = s3_builder(&bucket).build().map_err(|e| {
        Error::Store(format!(
            "{spec}: cannot configure S3: {}",
            one_line(&e.to_string())
        ))
    })?;
    Ok(StoreLocation {
        display: format!("s3://{bucket}/{prefix}")
            .trim_end_matches('/')
            .to_string(),
        base_url: Url::parse(&format!("s3://{bucket}"))
            .map_err(|e| Error::Store(format!("{spec}: {e}")))?,
        object_store: Arc::new(store),
        prefix,
        local_root: None,
    })
}

/// An object store registry that opens `s3://bucket` stores on first use, with the
/// run store's settings. Cluster processes use it: they learn which buckets a plan
/// reads only when its scans ask, and those buckets may differ from job to job.
#[derive(Debug, Default)]
pub struct LazyS3Registry {
    inner: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for LazyS3Registry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        if let Ok(found) = self.inner.get_store(url) {
            return Ok(found);
        }
        match (url.scheme(), url.host_str()) {
            ("s3", Some(bucket)) => {
                let opened = open_location(&format!("s3://{bucket}"))
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                self.inner
                    .register_store(&opened.base_url, opened.object_store.clone());
                Ok(opened.object_store)
            }
            _ => self.inner.get_store(url),
        }
    }
}

/// What a committed node wrote; stored as its commit marker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitMarker {
    pub node: String,
    pub stage: String,
    pub fingerprint: String,
    /// What the fingerprint was computed from, so `plan` can say what changed.
    pub fingerprint_material: serde_json::Value,
    pub rows: u64,
    pub rejects: u64,
    /// Seconds of audio in the output, when the table has durations.
    pub audio_seconds: Option<f64>,
    pub data_files: Vec<String>,
    pub reject_files: Vec<String>,
    pub committed_at_unix_s: u64,
    pub elapsed_s: f64,
}

/// The run store of one `speechmill` invocation.
#[derive(Clone, Debug)]
pub struct RunStore {
    location: StoreLocation,
}

impl RunStore {
    /// Opens the store and checks that it can be listed, so a wrong endpoint or bad
    /// credentials fail here with one line instead of mid-run.
    pub async fn open(spec: &str) -> Result<Self> {
        let location = open_location(spec)?;
        location
            .object_store
            .list_with_delimiter(Some(&location.prefix))
            .await
            .map_err(|e| {
                Error::Store(format!(
                    "{}: cannot list the store: {} (check AWS_ENDPOINT_URL, AWS_REGION and the credentials)",
                    location.display,
                    object_store_error(&e)
                ))
            })?;
        Ok(RunStore { location })
    }

    /// Opens the store without listing it: for tasks of a plan whose client has
    /// already checked it (executors write parts into it).
    pub fn open_unchecked(spec: &str) -> Result<Self> {
        Ok(RunStore {
            location: open_location(spec)?,
        })
    }

    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The store root as a string that [`open_location`] accepts (UDFs take it).
    pub fn url(&self) -> &str {
        &self.location.display
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.location.object_store
    }

    /// Makes the store readable and writable by DataFusion in `ctx`.
    pub fn register(&self, ctx: &SessionContext) {
        ctx.register_object_store(&self.location.base_url, self.location.object_store.clone());
    }

    /// `relative` (a `/`-separated path under the store root) as an object path.
    pub fn path(&self, relative: &str) -> Path {
        let mut p = self.location.prefix.clone();
        for part in relative.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// An object path as a URL DataFusion can read (`file:///…` or `s3://bucket/…`).
    pub fn url_of(&self, path: &Path) -> String {
        format!(
            "{}{}",
            self.location.base_url.as_str().trim_end_matches('/'),
            url_path(path)
        )
    }

    fn node_dir(&self, node: &str, fingerprint: &str) -> Path {
        self.path(&format!("{node}/{fingerprint}"))
    }

    /// The marker of `node` at `fingerprint`, if that output is committed.
    pub async fn committed(&self, node: &str, fingerprint: &str) -> Result<Option<CommitMarker>> {
        let path = self.node_dir(node, fingerprint).join(COMMIT_MARKER);
        self.read_json(&path).await
    }

    /// The latest committed output of `node`, whichever DAG or run wrote it.
    pub async fn current(&self, node: &str) -> Result<Option<CommitMarker>> {
        let pointer: Option<CurrentPointer> = self
            .read_json(&self.path(&format!("{node}/{CURRENT}")))
            .await?;
        match pointer {
            Some(p) => self.committed(node, &p.fingerprint).await,
            None => Ok(None),
        }
    }

    /// Every node with a committed output in this store, by name.
    pub async fn current_nodes(&self) -> Result<Vec<CommitMarker>> {
        let listing = self
            .location
            .object_store
            .list_with_delimiter(Some(&self.location.prefix))
            .await
            .map_err(|e| self.err("list", e))?;
        let mut markers = Vec::new();
        for dir in listing.common_prefixes {
            let Some(name) = dir.filename() else { continue };
            if name == BLOBS_DIR || name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            if let Some(m) = self.current(name).await? {
                markers.push(m);
            }
        }
        markers.sort_by(|a, b| {
            a.committed_at_unix_s
                .cmp(&b.committed_at_unix_s)
                .then(a.node.cmp(&b.node))
        });
        Ok(markers)
    }

    /// Removes whatever an interrupted run left in this node's output folder.
    pub async fn clear(&self, node: &str, fingerprint: &str) -> Result<()> {
        let dir = self.node_dir(node, fingerprint);
        let leftovers: Vec<_> = self
            .location
            .object_store
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.err("list", e))?;
        for path in leftovers {
            self.location
                .object_store
                .delete(&path)
                .await
                .map_err(|e| self.err("delete", e))?;
        }
        Ok(())
    }

    /// Where a node's data (`data`) or rejects (`rejects`) part file `name` goes.
    pub fn part_path(&self, node: &str, fingerprint: &str, table: &str, name: &str) -> Path {
        self.node_dir(node, fingerprint).join(table).join(name)
    }

    /// Commits a node: the marker last, then the node's CURRENT pointer.
    pub async fn commit(&self, marker: &CommitMarker) -> Result<()> {
        let dir = self.node_dir(&marker.node, &marker.fingerprint);
        self.write_json(&dir.join(COMMIT_MARKER), marker).await?;
        self.write_json(
            &self.path(&format!("{}/{CURRENT}", marker.node)),
            &CurrentPointer {
                fingerprint: marker.fingerprint.clone(),
            },
        )
        .await
    }

    /// URLs of a committed node's data or rejects files, for DataFusion.
    pub fn file_urls(&self, files: &[String]) -> Vec<String> {
        files.iter().map(|f| self.url_of(&self.path(f))).collect()
    }

    /// Path of `path` relative to the store root.
    pub fn relative(&self, path: &Path) -> String {
        path.prefix_match(&self.location.prefix)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| path.to_string())
    }

    async fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<Option<T>> {
        match self.location.object_store.get(path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| self.err("read", e))?;
                let value = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Store(format!("{}: corrupt store file: {e}", self.url_of(path)))
                })?;
                Ok(Some(value))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("read", e)),
        }
    }

    async fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Store(e.to_string()))?;
        self.location
            .object_store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|e| self.err("write", e))?;
        Ok(())
    }

    fn err(&self, what: &str, e: object_store::Error) -> Error {
        Error::Store(format!(
            "{}: cannot {what}: {}",
            self.location.display,
            object_store_error(&e)
        ))
    }
}

/// An object store error as one line. S3 answers errors with an XML body; its
/// `Code` and `Message` say what to fix (`InvalidAccessKeyId: …`), the rest is noise.
pub fn object_store_error(e: &object_store::Error) -> String {
    let text = one_line(&e.to_string());
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&format!("</{name}>"))?;
        Some(text[start..start + len].to_string())
    };
    match (
        text.find("<?xml").or_else(|| text.find("<Error>")),
        tag("Code"),
    ) {
        (Some(xml), Some(code)) => {
            let message = tag("Message").map(|m| format!(": {m}")).unwrap_or_default();
            format!("{}{code}{message}", &text[..xml])
        }
        _ => text,
    }
}

#[derive(Serialize, Deserialize)]
struct CurrentPointer {
    fingerprint: String,
}

/// An object path as the path part of a URL (percent-encoded, leading `/`).
fn url_path(path: &Path) -> String {
    let mut out = String::new();
    for part in path.parts() {
        out.push('/');
        out.push_str(part.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies_shrink_to_their_code_and_message() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\" \
                     encoding=\"utf-8\"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>The AWS \
                     Access Key Id you provided does not exist in our records.</Message>\
                     <RequestId>8U9x</RequestId></Error>"
                .into(),
        };
        let line = object_store_error(&e);
        assert!(
            line.ends_with(
                "403 Forbidden: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records."
            ),
            "{line}"
        );
        assert!(!line.contains('<'), "{line}");
        let plain = object_store::Error::NotFound {
            path: "a/b".into(),
            source: "gone".into(),
        };
        assert_eq!(object_store_error(&plain), one_line(&plain.to_string()));
    }
}
