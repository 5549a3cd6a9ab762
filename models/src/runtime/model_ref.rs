//! A model as a plan names it ([`ModelRef`]: name, where to find it, the sha256 of every
//! file it loads), and the check that a process loads exactly those files
//! ([`ModelRef::verify`], once per process per file and expected hash).
//!
//! The client hashes the model when it fingerprints a node and puts the reference into
//! the node's plan (the UDF's config literal). Whichever process runs the UDF (the
//! client, or a Ballista executor with its own cache) resolves the model in its own
//! cache and verifies it before loading: a different file fails the task with one line
//! naming the model, both hashes and the setup command, instead of labelling data with
//! a model the fingerprint does not describe.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::error::{ModelError, Result};
use super::hash::model_sha256;
use super::registry::resolve_model;

/// A model and the exact files it loads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// What messages call it: `whisper-base:int8`, `silero-vad`.
    pub name: String,
    /// Where each process finds it (see [`resolve_model`]): a registry artifact, a name
    /// under `<cache>/models/`, or a path.
    pub location: String,
    /// The files it loads, with their sha256.
    pub files: Vec<ModelFile>,
}

/// One file of a model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Relative to the model's location; empty when the location is the file itself.
    pub path: String,
    /// sha256 (hex) of the file, as [`model_sha256`] computes it.
    pub sha256: String,
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl ModelRef {
    /// Resolves `location` in this process's cache and hashes `files` (relative to it;
    /// none: the location is one file). This is what a client fingerprints a node with
    /// and puts into its plan.
    pub fn hashed(name: impl Into<String>, location: &str, files: &[&str]) -> Result<Self> {
        let root = resolve_model(location)?;
        let files = if files.is_empty() { &[""][..] } else { files };
        let files = files
            .iter()
            .map(|f| {
                Ok(ModelFile {
                    path: f.to_string(),
                    sha256: model_sha256(&file_path(&root, f))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ModelRef {
            name: name.into(),
            location: location.to_string(),
            files,
        })
    }

    /// The string a fingerprint takes: the files' sha256s concatenated in order (one
    /// file: its sha256).
    pub fn sha256(&self) -> String {
        self.files.iter().map(|f| f.sha256.as_str()).collect()
    }

    /// Where the model is in this process, unverified.
    pub fn path(&self) -> Result<PathBuf> {
        resolve_model(&self.location)
    }

    /// Resolves the model in this process and checks each file's sha256 against this
    /// reference, once per process per file and expected hash; returns the model's path.
    pub fn verify(&self) -> Result<PathBuf> {
        Verifier::global().verify(self)
    }

    /// A key naming this model's files here and their hashes (for process-wide caches).
    pub(crate) fn key(&self, root: &Path) -> String {
        format!("{}|{}", root.display(), self.sha256())
    }
}

fn file_path(root: &Path, file: &str) -> PathBuf {
    if file.is_empty() {
        root.to_path_buf()
    } else {
        root.join(file)
    }
}

/// A file and the sha256 it is expected to have.
type Expected = (PathBuf, String);

/// Remembers which (file, expected sha256) pairs this process has verified, so that a
/// 300 MB model is hashed once per process rather than once per UDF call. A mismatch is
/// not remembered: a file fixed by the setup step passes on the next call.
#[derive(Debug, Default)]
pub struct Verifier {
    /// One lock per (file, expected hash): concurrent first calls hash the file once.
    checked: Mutex<HashMap<Expected, Arc<Mutex<bool>>>>,
    hashed: AtomicUsize,
}

impl Verifier {
    /// An empty verifier (tests); the process-wide one is [`Verifier::global`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The verifier [`ModelRef::verify`] uses.
    pub fn global() -> &'static Verifier {
        static GLOBAL: OnceLock<Verifier> = OnceLock::new();
        GLOBAL.get_or_init(Verifier::new)
    }

    /// How many file checks this verifier has computed (not answered from memory).
    pub fn files_hashed(&self) -> usize {
        self.hashed.load(Ordering::Relaxed)
    }

    /// See [`ModelRef::verify`].
    pub fn verify(&self, model: &ModelRef) -> Result<PathBuf> {
        let root = model.path()?;
        for file in &model.files {
            let path = file_path(&root, &file.path);
            let slot = {
                let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
                Arc::clone(
                    checked
                        .entry((path.clone(), file.sha256.clone()))
                        .or_default(),
                )
            };
            let mut ok = slot.lock().unwrap_or_else(|p| p.into_inner());
            if *ok {
                continue;
            }
            self.hashed.fetch_add(1, Ordering::Relaxed);
            let here = model_sha256(&path)?;
            if here != file.sha256 {
                return Err(ModelError::HashMismatch {
                    model: model.name.clone(),
                    path,
                    here,
                    in_plan: file.sha256.clone(),
                });
            }
            *ok = true;
        }
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("speechmill-model-ref-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.onnx"), b"abc").unwrap();
        std::fs::write(dir.join("b.json"), b"{}").unwrap();
        dir
    }

    #[test]
    fn a_matching_model_verifies_and_its_sha256_is_the_files_in_order() {
        let dir = model_dir("match");
        let loc = dir.to_str().unwrap();
        let r = ModelRef::hashed("toy", loc, &["a.onnx", "b.json"]).unwrap();
        assert_eq!(r.files.len(), 2);
        assert_eq!(
            r.sha256(),
            format!(
                "{}{}",
                model_sha256(&dir.join("a.onnx")).unwrap(),
                model_sha256(&dir.join("b.json")).unwrap()
            )
        );
        assert_eq!(r.verify().unwrap(), dir);
        // One file as the location.
        let one = ModelRef::hashed("toy-a", dir.join("a.onnx").to_str().unwrap(), &[]).unwrap();
        assert_eq!(
            one.sha256(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(one.verify().unwrap(), dir.join("a.onnx"));
        // It travels as JSON (the UDF's config literal).
        let back: ModelRef = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mismatched_hash_fails_with_one_line_naming_model_hashes_and_setup() {
        let dir = model_dir("mismatch");
        let mut r = ModelRef::hashed("toy:int8", dir.to_str().unwrap(), &["a.onnx"]).unwrap();
        let here = r.files[0].sha256.clone();
        let in_plan = "0".repeat(64);
        r.files[0].sha256 = in_plan.clone();
        let e = r.verify().unwrap_err();
        assert!(matches!(e, ModelError::HashMismatch { .. }), "{e}");
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        for needle in [
            "toy:int8",
            "a.onnx",
            here.as_str(),
            in_plan.as_str(),
            "bash scripts/setup.sh",
        ] {
            assert!(msg.contains(needle), "{needle} not in: {msg}");
        }
        // Not remembered: still a mismatch, and a fixed file passes.
        assert!(r.verify().is_err());
        std::fs::write(dir.join("a.onnx"), b"fixed").unwrap();
        r.files[0].sha256 = model_sha256(&dir.join("a.onnx")).unwrap();
        assert!(r.verify().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn verification_hashes_each_file_once_per_process() {
        let dir = model_dir("once");
        let r = ModelRef::hashed("toy", dir.to_str().unwrap(), &["a.onnx", "b.json"]).unwrap();
        let verifier = Verifier::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| verifier.verify(&r).unwrap());
            }
        });
        verifier.verify(&r).unwrap();
        assert_eq!(verifier.files_hashed(), 2, "one check per file");
        // Another expected hash for the same file is another check.
        let mut other = r.clone();
        other.files.truncate(1);
        other.files[0].sha256 = "f".repeat(64);
        assert!(verifier.verify(&other).is_err());
        assert_eq!(verifier.files_hashed(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_model_names_the_setup_command() {
        let r = ModelRef {
            name: "ghost".into(),
            location: "/nonexistent/speechmill/ghost.onnx".into(),
            files: vec![ModelFile {
                path: String::new(),
                sha256: "0".repeat(64),
            }],
        };
        let msg = r.verify().unwrap_err().to_string();
        assert!(
            msg.contains("ghost.onnx") && msg.contains("bash scripts/setup.sh"),
            "{msg}"
        );
    }
}
