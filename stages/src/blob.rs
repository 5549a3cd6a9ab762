//! Reading source blobs back from the run store as local files (decoders need
//! `Read + Seek`): a local store's file directly, a remote blob via a temp copy.
//! A `blob` value is a column like any other (an `sql` node can write anything
//! into it), so only keys of the form ingest writes are resolved, and only
//! inside the store: never a path of the local machine.

use std::io::Write;
use std::path::PathBuf;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use speechmill_pipeline::store::{BLOBS_DIR, open_location};

/// A blob as a local file; the temp copy (if any) is removed on drop.
pub struct LocalBlob {
    pub path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

/// Opens the blob `key` of the store at `store_url`.
pub async fn local_blob(store_url: &str, key: &str) -> Result<LocalBlob, String> {
    check_blob_key(key)?;
    let store = open_location(store_url).map_err(|e| format!("store_unavailable: {e}"))?;
    if let Some(root) = &store.local_root {
        return Ok(LocalBlob {
            path: root.join(key),
            _temp: None,
        });
    }
    let path = key
        .split('/')
        .fold(store.prefix.clone(), |p, part| p.join(part));
    let got = store
        .object_store
        .get(&path)
        .await
        .map_err(|e| format!("store_unavailable: cannot read blob {key}: {e}"))?;
    let mut temp = tempfile::NamedTempFile::new().map_err(|e| format!("io: temp file: {e}"))?;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("store_unavailable: reading blob {key}: {e}"))?;
        temp.write_all(&chunk)
            .map_err(|e| format!("io: temp file: {e}"))?;
    }
    temp.flush().map_err(|e| format!("io: temp file: {e}"))?;
    let temp = temp.into_temp_path();
    Ok(LocalBlob {
        path: temp.to_path_buf(),
        _temp: Some(temp),
    })
}

/// Accepts only `blobs/sha256/<first 2 hex digits>/<64 hex digits>`, the keys ingest
/// writes: no absolute paths, no `..`, nothing outside the store's blobs.
fn check_blob_key(key: &str) -> Result<(), String> {
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let parts: Vec<&str> = key.split('/').collect();
    let valid = match parts.as_slice() {
        [dir, "sha256", prefix, hash] => {
            *dir == BLOBS_DIR
                && hash.len() == 64
                && lower_hex(hash)
                && prefix.len() == 2
                && hash.starts_with(prefix)
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "bad_blob: `{key}` is not a blob key of the store ({BLOBS_DIR}/sha256/<2 hex>/<sha256>)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blob_keys_inside_the_store_resolve() {
        let hash = "ab".repeat(32);
        assert!(check_blob_key(&format!("blobs/sha256/ab/{hash}")).is_ok());
        for bad in [
            "/etc/passwd".to_string(),
            "../../etc/passwd".to_string(),
            format!("blobs/sha256/ab/../../../{hash}"),
            format!("blobs/sha256/cd/{hash}"),
            format!("/blobs/sha256/ab/{hash}"),
            "blobs/sha256/ab/abc".to_string(),
        ] {
            let e = check_blob_key(&bad).unwrap_err();
            assert!(e.starts_with("bad_blob:"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn a_path_outside_the_store_is_refused_before_any_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = local_blob(dir.path().to_str().unwrap(), "/etc/hostname")
            .await
            .err()
            .unwrap();
        assert!(e.starts_with("bad_blob:"), "{e}");
    }
}
