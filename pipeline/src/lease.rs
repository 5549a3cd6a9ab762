//! One run at a time per store. A run holds `_LEASE.json` at the store root while
//! it writes, refreshing it every few seconds; a second run finds it and is refused
//! with one line naming the holder. A lease whose holder stopped refreshing (the run
//! crashed or was killed on another machine), or whose holder process is gone on
//! this machine, is stale and taken over, so a crashed run never locks a store for
//! good.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::{RunStore, object_store_error};

/// Name of the lease object at the store root.
pub const LEASE_FILE: &str = "_LEASE.json";
/// How often the holder rewrites its lease.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// A lease not refreshed for this long belongs to a run that is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(45);

/// What a lease says about its run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LeaseInfo {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    /// What the run does (`run dags/demo.toml`).
    pub what: String,
    pub started_at_unix_s: u64,
    pub refreshed_at_unix_s: u64,
}

impl LeaseInfo {
    /// Whether the run that wrote this lease is certainly gone: its process no
    /// longer exists on this machine, or it stopped refreshing long ago.
    fn is_stale(&self, now: u64) -> bool {
        if self.host == hostname() && !process_alive(self.pid) {
            return true;
        }
        now.saturating_sub(self.refreshed_at_unix_s) > STALE_AFTER.as_secs()
    }

    fn describe(&self, now: u64) -> String {
        format!(
            "run {} ({}; pid {} on {}, started {} s ago, alive {} s ago)",
            self.run_id,
            self.what,
            self.pid,
            self.host,
            now.saturating_sub(self.started_at_unix_s),
            now.saturating_sub(self.refreshed_at_unix_s)
        )
    }
}

/// A held lease; refreshed in the background until [`RunLease::release`] or drop.
pub struct RunLease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    info: LeaseInfo,
    refresher: tokio::task::JoinHandle<()>,
}

impl RunLease {
    /// Takes the store's lease for a run described by `what`, or fails with one
    /// line naming the run that holds it.
    pub async fn acquire(store: &RunStore, what: &str) -> Result<RunLease> {
        let path = store.path(LEASE_FILE);
        let objects = store.object_store().clone();
        let now = unix_now();
        let info = LeaseInfo {
            run_id: run_id(now),
            host: hostname(),
            pid: std::process::id(),
            what: what.to_string(),
            started_at_unix_s: now,
            refreshed_at_unix_s: now,
        };
        for _ in 0..3 {
            if create(&objects, &path, &info).await? {
                let refresher = tokio::spawn(refresh(objects.clone(), path.clone(), info.clone()));
                return Ok(RunLease {
                    store: objects,
                    path,
                    info,
                    refresher,
                });
            }
            match read(&objects, &path).await? {
                // Released between our attempt and the read: try again.
                None => continue,
                Some(holder) if holder.is_stale(unix_now()) => {
                    tracing::warn!(
                        "taking over the stale lease of {} in {}",
                        holder.describe(unix_now()),
                        store.url()
                    );
                    delete(&objects, &path).await?;
                }
                Some(holder) => {
                    return Err(Error::Store(format!(
                        "{}: another {} is writing this store; wait for it to finish \
                         (a crashed run's lease expires {} s after its last refresh)",
                        store.url(),
                        holder.describe(unix_now()),
                        STALE_AFTER.as_secs()
                    )));
                }
            }
        }
        Err(Error::Store(format!(
            "{}: cannot take the store's lease ({}): other runs keep starting",
            store.url(),
            store.url_of(&path)
        )))
    }

    pub fn info(&self) -> &LeaseInfo {
        &self.info
    }

    /// Gives the lease back (only if it is still ours).
    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        if read(&self.store, &self.path)
            .await?
            .is_some_and(|held| held.run_id == self.info.run_id)
        {
            delete(&self.store, &self.path).await?;
        }
        Ok(())
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// Writes the lease only if none exists; false when one does.
async fn create(store: &Arc<dyn ObjectStore>, path: &Path, info: &LeaseInfo) -> Result<bool> {
    let body = serde_json::to_vec_pretty(info).map_err(|e| Error::Store(e.to_string()))?;
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store.put_opts(path, PutPayload::from(body), options).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(e) => Err(Error::Store(format!(
            "cannot write the store's lease {path}: {}",
            object_store_error(&e)
        ))),
    }
}

async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Option<LeaseInfo>> {
    match store.get(path).await {
        Ok(got) => {
            let bytes = got
                .bytes()
                .await
                .map_err(|e| Error::Store(format!("cannot read the store's lease {path}: {e}")))?;
            // An unreadable lease (a torn write of a crashed run) counts as stale.
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or(LeaseInfo {
                run_id: "unknown".into(),
                host: String::new(),
                pid: 0,
                what: "unreadable lease".into(),
                started_at_unix_s: 0,
                refreshed_at_unix_s: 0,
            })))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::Store(format!(
            "cannot read the store's lease {path}: {}",
            object_store_error(&e)
        ))),
    }
}

async fn delete(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::Store(format!(
            "cannot remove the store's lease {path}: {}",
            object_store_error(&e)
        ))),
    }
}

/// Rewrites the lease's refresh time while the run lives.
async fn refresh(store: Arc<dyn ObjectStore>, path: Path, mut info: LeaseInfo) {
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        info.refreshed_at_unix_s = unix_now();
        let Ok(body) = serde_json::to_vec_pretty(&info) else {
            return;
        };
        if let Err(e) = store.put(&path, PutPayload::from(body)).await {
            tracing::warn!("cannot refresh the store's lease {path}: {e}");
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A short id for this run: host, pid and start time, hashed.
fn run_id(now: u64) -> String {
    let mut h = Sha256::new();
    h.update(hostname().as_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(now.to_le_bytes());
    h.update(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    hex::encode(&h.finalize()[..6])
}

/// This machine's name, as the kernel has it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string())
}

/// Whether a process with this pid exists here (Linux: `/proc/<pid>`). Where
/// `/proc` is missing, every process counts as alive and only the refresh time
/// decides.
fn process_alive(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, RunStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().to_str().unwrap()).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_second_run_is_refused_naming_the_first_until_it_releases() {
        let (_dir, store) = store().await;
        let first = RunLease::acquire(&store, "run dags/a.toml").await.unwrap();
        let e = RunLease::acquire(&store, "run dags/b.toml")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(&first.info().run_id), "{e}");
        assert!(e.contains("run dags/a.toml"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        first.release().await.unwrap();
        let second = RunLease::acquire(&store, "run dags/b.toml").await.unwrap();
        second.release().await.unwrap();
    }

    #[tokio::test]
    async fn the_lease_of_a_dead_process_or_a_silent_run_is_taken_over() {
        let (_dir, store) = store().await;
        let path = store.path(LEASE_FILE);
        let now = unix_now();
        // A process that has exited: its pid is gone from this machine.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let dead = LeaseInfo {
            run_id: "dead".into(),
            host: hostname(),
            pid: dead_pid,
            what: "run x".into(),
            started_at_unix_s: now,
            refreshed_at_unix_s: now,
        };
        // A run on another machine that stopped refreshing long ago.
        let silent = LeaseInfo {
            run_id: "silent".into(),
            host: "elsewhere".into(),
            pid: 1,
            what: "run y".into(),
            started_at_unix_s: now - 600,
            refreshed_at_unix_s: now - 600,
        };
        for holder in [dead, silent] {
            store
                .object_store()
                .put(
                    &path,
                    PutPayload::from(serde_json::to_vec(&holder).unwrap()),
                )
                .await
                .unwrap();
            let lease = RunLease::acquire(&store, "run z").await.unwrap();
            lease.release().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_live_run_on_another_machine_holds_its_lease() {
        let (_dir, store) = store().await;
        let now = unix_now();
        let live = LeaseInfo {
            run_id: "remote".into(),
            host: "elsewhere".into(),
            pid: 1,
            what: "run y".into(),
            started_at_unix_s: now - 5,
            refreshed_at_unix_s: now - 1,
        };
        store
            .object_store()
            .put(
                &store.path(LEASE_FILE),
                PutPayload::from(serde_json::to_vec(&live).unwrap()),
            )
            .await
            .unwrap();
        let e = RunLease::acquire(&store, "run z").await.err().unwrap();
        assert!(e.to_string().contains("run remote"), "{e}");
    }
}
