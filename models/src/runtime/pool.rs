//! Loading a verified model once per process: [`shared_model`] (one instance that every
//! caller shares, for models that multiplex internally, like Whisper) and
//! [`SessionPool`] (an instance per concurrent caller, for models whose calls would
//! otherwise queue on one session's lock, like Silero VAD or a plain ONNX session).
//! Both are keyed by the model's files and hashes and the [`SessionConfig`] (device
//! and threads), and both verify the model against its [`ModelRef`] first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::error::Result;
use super::model_ref::ModelRef;
use super::session::SessionConfig;
use super::shared::shared;

/// How a model is built from its resolved path (a file or a directory) in this process.
pub type Loader<T> = fn(&Path, &SessionConfig) -> Result<T>;

/// The model `model` names, verified, loaded by `load` once per process, model files
/// and session config, and shared by every caller.
pub fn shared_model<T, F>(model: &ModelRef, config: &SessionConfig, load: F) -> Result<Arc<T>>
where
    T: Send + Sync + 'static,
    F: FnOnce(&Path, &SessionConfig) -> Result<T>,
{
    let path = model.verify()?;
    let key = format!("model|{}|{config:?}", model.key(&path));
    shared(&key, || load(&path, config))
}

/// Loaded instances of one model on one session config: a caller takes an idle one (or
/// loads another), uses it, and gives it back. At most as many instances as callers at
/// a time (one per partition), so calls never queue on each other.
pub struct SessionPool<T> {
    model: ModelRef,
    path: PathBuf,
    config: SessionConfig,
    load: Loader<T>,
    idle: Mutex<Vec<T>>,
}

impl<T> std::fmt::Debug for SessionPool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("model", &self.model.name)
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> SessionPool<T> {
    /// The process-wide pool of `model` on `config`. The model is verified against its
    /// reference (once per process) and one instance is loaded now, so a broken model
    /// fails here, once.
    pub fn shared(model: &ModelRef, config: &SessionConfig, load: Loader<T>) -> Result<Arc<Self>> {
        let path = model.verify()?;
        let key = format!("pool|{}|{config:?}", model.key(&path));
        shared(&key, || {
            let first = load(&path, config)?;
            Ok(SessionPool {
                model: model.clone(),
                path: path.clone(),
                config: config.clone(),
                load,
                idle: Mutex::new(vec![first]),
            })
        })
    }

    /// Runs `f` on an idle instance (loading one when all are busy) and keeps it for the
    /// next caller.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut instance = match idle {
            Some(i) => i,
            None => (self.load)(&self.path, &self.config)?,
        };
        let out = f(&mut instance);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(instance);
        Ok(out)
    }

    /// The model this pool runs.
    pub fn model(&self) -> &ModelRef {
        &self.model
    }

    /// Where the model is in this process.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ModelError;

    fn toy(tag: &str) -> (PathBuf, ModelRef) {
        let path =
            std::env::temp_dir().join(format!("speechmill-pool-{tag}-{}.bin", std::process::id()));
        std::fs::write(&path, tag.as_bytes()).unwrap();
        let r = ModelRef::hashed(tag, path.to_str().unwrap(), &[]).unwrap();
        (path, r)
    }

    fn read(path: &Path, _: &SessionConfig) -> Result<String> {
        std::fs::read_to_string(path).map_err(|e| ModelError::InvalidInput(e.to_string()))
    }

    #[test]
    fn a_pool_loads_a_verified_model_and_grows_to_its_callers() {
        let (path, r) = toy("pool-ok");
        let pool = SessionPool::shared(&r, &SessionConfig::default(), read).unwrap();
        let again = SessionPool::shared(&r, &SessionConfig::default(), read).unwrap();
        assert!(Arc::ptr_eq(&pool, &again));
        let nested = pool
            .with(|outer| {
                // A second caller while the first holds an instance gets its own.
                pool.with(|inner| format!("{outer}+{inner}")).unwrap()
            })
            .unwrap();
        assert_eq!(nested, "pool-ok+pool-ok");
        assert_eq!(pool.idle.lock().unwrap().len(), 2);
        // Another device or thread count is another pool.
        let other = SessionPool::shared(&r, &SessionConfig::cpu(2), read).unwrap();
        assert!(!Arc::ptr_eq(&pool, &other));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_pool_of_a_mismatched_model_is_refused() {
        let (path, mut r) = toy("pool-bad");
        r.files[0].sha256 = "1".repeat(64);
        let e = SessionPool::shared(&r, &SessionConfig::default(), read).unwrap_err();
        assert!(matches!(e, ModelError::HashMismatch { .. }), "{e}");
        let e = shared_model(&r, &SessionConfig::default(), read).unwrap_err();
        assert!(matches!(e, ModelError::HashMismatch { .. }), "{e}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_shared_model_is_loaded_once() {
        let (path, r) = toy("shared-once");
        let a = shared_model(&r, &SessionConfig::default(), read).unwrap();
        let b = shared_model(
            &r,
            &SessionConfig::default(),
            |_: &Path, _: &SessionConfig| Ok::<String, ModelError>("loaded again".into()),
        )
        .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*b, "shared-once");
        std::fs::remove_file(path).unwrap();
    }
}
