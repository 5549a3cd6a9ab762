//! `speechmill doctor`: what is installed, what is missing, and the command that
//! fixes it. Paths come from speechmill-models, the same lookup the stages use.

use speechmill_models::{
    SETUP_HINT, cache_dir, environment, model_path, ort_library_path, registry,
};

/// One line of the report: what, and either where it is or how to get it.
struct Check {
    what: String,
    result: Result<String, String>,
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
    let mut checks = vec![Check {
        what: "cache folder".into(),
        result: cache_dir()
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string()),
    }];
    checks.push(Check {
        what: "onnxruntime library".into(),
        result: ort_library_path()
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string()),
    });
    if checks.iter().all(|c| c.result.is_ok()) {
        checks.push(Check {
            what: "onnxruntime loads".into(),
            result: environment()
                .map(|_| "yes".to_string())
                .map_err(|e| e.to_string()),
        });
    }
    for artifact in &registry().artifacts {
        if artifact.name == "onnxruntime" {
            continue;
        }
        checks.push(Check {
            what: format!("model {}", artifact.name),
            result: model_path(&artifact.name)
                .map(|p| p.display().to_string())
                .map_err(|e| e.to_string()),
        });
    }
    let moto = cache_dir()
        .map(|c| c.join("venv/bin/moto_server"))
        .ok()
        .filter(|p| p.is_file());
    checks.push(Check {
        what: "S3 test server (moto)".into(),
        result: moto
            .map(|p| p.display().to_string())
            .ok_or_else(|| SETUP_HINT.to_string()),
    });
    for (tool, why) in [
        ("ffmpeg", "demo audio, benchmarks"),
        ("espeak-ng", "demo speech"),
    ] {
        checks.push(Check {
            what: format!("{tool} ({why})"),
            result: program(tool).ok_or_else(|| format!("apt-get install {tool}, or {SETUP_HINT}")),
        });
    }

    let mut missing = 0;
    for c in &checks {
        match &c.result {
            Ok(found) => println!("ok       {:<48} {found}", c.what),
            Err(fix) => {
                missing += 1;
                println!("missing  {:<48} {fix}", c.what);
            }
        }
    }
    if missing == 0 {
        println!("everything speechmill needs is here");
    } else {
        println!("{missing} missing: {SETUP_HINT} from the speechmill checkout (it is idempotent)");
    }
    Ok(())
}
