//! sha256 of model files and directories, computed once per file version per process.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::error::{ModelError, Result, io_error};

/// The sha256 (hex) of a model file, or of a model directory (over its files' relative
/// names and sha256s, sorted). Cached per path in the process and recomputed only when
/// the file's size or mtime changes. The pipeline fingerprints nodes with it.
pub fn model_sha256(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => io_error(path)(e),
    })?;
    if meta.is_dir() {
        let mut files = Vec::new();
        list_files(path, path, &mut files)?;
        files.sort();
        let mut h = Sha256::new();
        for rel in files {
            let sha = model_sha256(&path.join(&rel))?;
            h.update(rel.as_bytes());
            h.update(b"\0");
            h.update(sha.as_bytes());
            h.update(b"\n");
        }
        return Ok(hex::encode(h.finalize()));
    }
    type HashCache = HashMap<PathBuf, (u64, Option<SystemTime>, String)>;
    static CACHE: OnceLock<Mutex<HashCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let stamp = (meta.len(), meta.modified().ok());
    if let Some((len, mtime, sha)) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(path)
        .cloned()
        && (len, mtime) == stamp
    {
        return Ok(sha);
    }
    let mut f = std::fs::File::open(path).map_err(io_error(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let sha = hex::encode(h.finalize());
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(path.to_path_buf(), (stamp.0, stamp.1, sha.clone()));
    Ok(sha)
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let p = entry.path();
        if p.is_dir() {
            list_files(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_sha256_of_file_and_dir_is_stable() {
        let dir = std::env::temp_dir().join(format!("speechmill-sha-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.bin"), b"abc").unwrap();
        std::fs::write(dir.join("sub/b.bin"), b"").unwrap();
        let a = model_sha256(&dir.join("a.bin")).unwrap();
        assert_eq!(
            a,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(model_sha256(&dir.join("a.bin")).unwrap(), a); // cached
        let d1 = model_sha256(&dir).unwrap();
        assert_eq!(model_sha256(&dir).unwrap(), d1);
        std::fs::write(dir.join("sub/b.bin"), b"changed").unwrap();
        assert_ne!(model_sha256(&dir).unwrap(), d1);
        let e = model_sha256(&dir.join("missing.onnx")).unwrap_err();
        assert!(matches!(e, ModelError::MissingFile { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
