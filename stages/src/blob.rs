//! Reading source blobs back from the run store as local files (decoders need
//! `Read + Seek`): a local store's file directly, a remote blob via a temp copy.

use std::io::Write;
use std::path::PathBuf;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use speechmill_pipeline::store::open_location;

/// A blob as a local file; the temp copy (if any) is removed on drop.
pub struct LocalBlob {
    pub path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

/// Opens the blob `key` of the store at `store_url`.
pub async fn local_blob(store_url: &str, key: &str) -> Result<LocalBlob, String> {
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
