//! `speechmill doctor`: what is installed, what is missing, and the command that
//! fixes it. Paths come from speechmill-models, the same lookup the stages use
//! (`SPEECHMILL_CACHE`, else `.cache/speechmill` above the current dir or the binary),
//! and the list of what to check is the one the models crate loads from
//! ([`speechmill_models::inventory::needed`]). Exits non-zero when anything a stage,
//! setup or the tests load is missing.

use speechmill_models::{cache_dir, environment, inventory, ort_library_path, setup_command};

/// One line of the report: what, and either where it is or how to get it.
struct Check {
    what: String,
    result: Result<String, String>,
    /// Counts towards the exit status (the demo's and tests' tools do not).
    required: bool,
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
    let setup = setup_command();
    let fix = format!("run `{setup}`");
    let cache = cache_dir();
    let mut checks = vec![Check {
        what: "cache folder".into(),
        result: cache
            .as_ref()
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string()),
        required: true,
    }];
    let ort = ort_library_path();
    let ort_found = ort.is_ok();
    checks.push(Check {
        what: "onnxruntime library".into(),
        result: ort
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string()),
        required: true,
    });
    if ort_found {
        checks.push(Check {
            what: "onnxruntime loads".into(),
            result: environment()
                .map(|_| "yes".to_string())
                .map_err(|e| e.to_string()),
            required: true,
        });
    }
    for needed in inventory::needed() {
        let what = format!("{} [{}]", needed.what, needed.used_by);
        let result = match &cache {
            Ok(dir) => {
                let missing = needed.missing_in(dir);
                if missing.is_empty() {
                    Ok(match needed.files.as_slice() {
                        [one] => dir.join(one).display().to_string(),
                        _ => format!("{} files in {}", needed.files.len(), dir.display()),
                    })
                } else {
                    Err(format!(
                        "{} not in {}: {fix}",
                        missing.join(", "),
                        dir.display()
                    ))
                }
            }
            Err(_) => Err(format!("no cache folder: {fix}")),
        };
        checks.push(Check {
            what,
            result,
            required: true,
        });
    }
    let moto = cache
        .as_ref()
        .map(|c| c.join("venv/bin/moto_server"))
        .ok()
        .filter(|p| p.is_file());
    checks.push(Check {
        what: "S3 test server (moto) [tests]".into(),
        result: moto
            .map(|p| p.display().to_string())
            .ok_or_else(|| fix.clone()),
        required: false,
    });
    for (tool, why) in [
        ("ffmpeg", "demo audio, benchmarks"),
        ("espeak-ng", "demo speech"),
    ] {
        checks.push(Check {
            what: format!("{tool} [{why}]"),
            result: program(tool).ok_or_else(|| format!("apt-get install {tool}, or {fix}")),
            required: false,
        });
    }

    let mut missing = Vec::new();
    for c in &checks {
        match &c.result {
            Ok(found) => println!("ok       {:<56} {found}", c.what),
            Err(why) => {
                let label = if c.required { "missing" } else { "optional" };
                println!("{label:<8} {:<56} {why}", c.what);
                if c.required {
                    missing.push(c.what.as_str());
                }
            }
        }
    }
    if missing.is_empty() {
        println!("everything speechmill needs is here");
        Ok(())
    } else {
        anyhow::bail!(
            "{} missing ({}): run `{setup}` from the speechmill checkout (it is idempotent)",
            missing.len(),
            missing.join("; ")
        )
    }
}
