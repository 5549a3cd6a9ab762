//! Node fingerprints: a node's output is a pure function of its stage and version,
//! params, models, sources and its inputs' fingerprints, so the hash of those names
//! the output folder and decides whether a rerun can reuse it.

use sha2::{Digest, Sha256};

/// What a node's fingerprint is computed from. `speed_only` names params that change
/// speed, not output: they are left out, so tuning them never reruns a node.
pub fn material(
    stage: &str,
    version: u32,
    mut params: serde_json::Value,
    speed_only: &[&str],
    extra: serde_json::Value,
    inputs: &[(String, String)],
) -> serde_json::Value {
    if let Some(map) = params.as_object_mut() {
        for name in speed_only {
            map.remove(*name);
        }
    }
    let inputs: serde_json::Map<String, serde_json::Value> = inputs
        .iter()
        .map(|(name, fp)| (name.clone(), serde_json::Value::String(fp.clone())))
        .collect();
    serde_json::json!({
        "stage": stage,
        "version": version,
        "params": params,
        "extra": extra,
        "inputs": inputs,
    })
}

/// The fingerprint of `material`: 16 hex digits of the sha256 of its canonical JSON.
pub fn fingerprint(material: &serde_json::Value) -> String {
    let mut canonical = String::new();
    write_canonical(material, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    hex::encode(&digest[..8])
}

/// JSON with object keys sorted, whatever map order serde_json was built with.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String((*key).clone()).to_string());
                out.push(':');
                write_canonical(&map[*key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Says in a few words why `new` differs from the committed `old` material.
pub fn explain_change(old: &serde_json::Value, new: &serde_json::Value) -> String {
    let mut reasons = Vec::new();
    if old.get("stage") != new.get("stage") {
        reasons.push("stage changed".to_string());
    } else if old.get("version") != new.get("version") {
        reasons.push("stage version changed".to_string());
    }
    let changed_keys = |key: &str| -> Vec<String> {
        let (Some(a), Some(b)) = (
            old.get(key).and_then(|v| v.as_object()),
            new.get(key).and_then(|v| v.as_object()),
        ) else {
            return if old.get(key) != new.get(key) {
                vec![String::new()]
            } else {
                vec![]
            };
        };
        let mut names: Vec<String> = a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let params = changed_keys("params");
    if !params.is_empty() {
        reasons.push(
            format!("params changed: {}", params.join(", "))
                .trim_end_matches(": ")
                .to_string(),
        );
    }
    if old.get("extra") != new.get("extra") {
        reasons.push("sources or models changed".to_string());
    }
    let inputs = changed_keys("inputs");
    if !inputs.is_empty() {
        reasons.push(format!("input {} changed", inputs.join(", ")));
    }
    if reasons.is_empty() {
        "fingerprint changed".to_string()
    } else {
        reasons.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_key_order() {
        let a = serde_json::json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b = serde_json::json!({"b": {"y": "z", "x": [1, 2]}, "a": 1});
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn fingerprint_changes_with_params_and_inputs() {
        let base = material(
            "asr",
            1,
            serde_json::json!({"beam_size": 5}),
            &[],
            serde_json::Value::Null,
            &[("segment".into(), "abc".into())],
        );
        let params = material(
            "asr",
            1,
            serde_json::json!({"beam_size": 1}),
            &[],
            serde_json::Value::Null,
            &[("segment".into(), "abc".into())],
        );
        let inputs = material(
            "asr",
            1,
            serde_json::json!({"beam_size": 5}),
            &[],
            serde_json::Value::Null,
            &[("segment".into(), "abd".into())],
        );
        assert_ne!(fingerprint(&base), fingerprint(&params));
        assert_ne!(fingerprint(&base), fingerprint(&inputs));
        assert_eq!(explain_change(&base, &params), "params changed: beam_size");
        assert_eq!(explain_change(&base, &inputs), "input segment changed");
    }

    #[test]
    fn speed_only_params_leave_the_fingerprint_unchanged() {
        let with = |threads: u32, beam: u32| {
            fingerprint(&material(
                "asr",
                1,
                serde_json::json!({"beam_size": beam, "threads": threads}),
                &["threads"],
                serde_json::Value::Null,
                &[],
            ))
        };
        assert_eq!(with(1, 5), with(8, 5));
        assert_ne!(with(1, 5), with(1, 1));
    }
}
