//! `speechmill doctor`: what is installed, what is missing, and the command that
//! fixes it.

use std::path::{Path, PathBuf};

const SETUP: &str = "bash scripts/setup.sh";

struct Check {
    what: &'static str,
    found: Option<String>,
    fix: String,
}

/// The cache folder setup fills (`SPEECHMILL_CACHE`, else `.cache/speechmill` in
/// the current folder or one above it).
fn cache_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("SPEECHMILL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join(".cache/speechmill");
        if candidate.is_dir() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

fn file_check(what: &'static str, path: Option<PathBuf>) -> Check {
    Check {
        what,
        found: path.filter(|p| p.is_file()).map(|p| p.display().to_string()),
        fix: SETUP.to_string(),
    }
}

fn program(name: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

pub fn doctor() -> anyhow::Result<()> {
    let cache = cache_dir();
    let under = |rel: &str| cache.as_ref().map(|c| c.join(rel));
    let ort = std::env::var("ORT_DYLIB_PATH")
        .ok()
        .map(PathBuf::from)
        .or_else(|| under("onnxruntime/libonnxruntime.so.1.32.0"));
    let checks = vec![
        Check {
            what: "cache folder (.cache/speechmill)",
            found: cache.as_ref().filter(|c| c.is_dir()).map(|c| c.display().to_string()),
            fix: SETUP.to_string(),
        },
        file_check("onnxruntime 1.32 library", ort),
        file_check("Silero VAD model", under("models/silero_vad.onnx")),
        file_check("Whisper base (CTranslate2)", under("models/whisper-base-ct2/model.bin")),
        file_check("Whisper tiny.en (CTranslate2)", under("models/whisper-tiny.en-ct2/model.bin")),
        file_check("demo audio", under("demo-audio/README").or_else(|| under("demo-audio/.stamp"))),
        Check {
            what: "S3 test server (moto)",
            found: under("venv/bin/moto_server").filter(|p| p.is_file()).map(|p| p.display().to_string()),
            fix: SETUP.to_string(),
        },
        Check {
            what: "ffmpeg (demo audio, benchmarks)",
            found: program("ffmpeg"),
            fix: "apt-get install ffmpeg".to_string(),
        },
        Check {
            what: "espeak-ng (demo speech)",
            found: program("espeak-ng"),
            fix: "apt-get install espeak-ng".to_string(),
        },
    ];
    let mut missing = 0;
    for c in &checks {
        match &c.found {
            Some(path) => println!("ok       {:<34} {}", c.what, shorten(path)),
            None => {
                missing += 1;
                println!("missing  {:<34} fix: {}", c.what, c.fix);
            }
        }
    }
    if missing == 0 {
        println!("everything speechmill needs is here");
    } else {
        println!("{missing} missing: run `{SETUP}` from the speechmill checkout (it is idempotent)");
    }
    Ok(())
}

fn shorten(path: &str) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| Path::new(path).strip_prefix(cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.to_string())
}
