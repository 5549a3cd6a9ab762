//! Process-wide instances: one loaded model per key, shared by every partition.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::error::Result;

type SharedMap = HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>;

/// A process-wide instance of `T` per `key`, built by `init` on first use and shared
/// afterwards (e.g. one model session per model file and config for all partitions).
/// Concurrent first calls build it once; a failed `init` is not remembered.
pub fn shared<T, F>(key: &str, init: F) -> Result<Arc<T>>
where
    T: Send + Sync + 'static,
    F: FnOnce() -> Result<T>,
{
    static SHARED: OnceLock<Mutex<SharedMap>> = OnceLock::new();
    let map = SHARED.get_or_init(Default::default);
    let mut guard = map.lock().unwrap_or_else(|p| p.into_inner());
    let k = (TypeId::of::<T>(), key.to_string());
    if let Some(v) = guard.get(&k)
        && let Ok(t) = Arc::clone(v).downcast::<T>()
    {
        return Ok(t);
    }
    let t = Arc::new(init()?);
    guard.insert(k, t.clone());
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ModelError;

    #[test]
    fn shared_builds_once_per_key() {
        let a = shared::<String, _>("k1", || Ok("one".to_string())).unwrap();
        let b = shared::<String, _>("k1", || Ok("two".to_string())).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = shared::<String, _>("k2", || Ok("three".to_string())).unwrap();
        assert_eq!(*c, "three");
        let e = shared::<u32, _>("k3", || Err(ModelError::InvalidInput("x".into())));
        assert!(e.is_err());
        assert_eq!(*shared::<u32, _>("k3", || Ok(3)).unwrap(), 3);
    }
}
