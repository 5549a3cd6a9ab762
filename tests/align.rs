//! Forced alignment: the CTC aligner against a pure-Python port of torchaudio's
//! `forced_align` (tests/peers/forced_align_reference.py) on random emissions.

mod common;

use std::process::Command;

use common::*;
use speechmill_models::ctc::{AlignError, forced_align, merge_tokens};

#[test]
fn ctc_aligner_equals_a_python_port_of_torchaudio_forced_align_on_random_emissions() {
    let Some(python) = peers_python("forced_align reference") else {
        return;
    };
    let script = repo_root().join("tests/peers/forced_align_reference.py");
    let out = output(Command::new(python).args([
        script.to_str().unwrap(),
        "--seed",
        "11",
        "--cases",
        "400",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (i, case) in cases.iter().enumerate() {
        let vocabulary = case["vocabulary"].as_u64().unwrap() as usize;
        let blank = case["blank"].as_u64().unwrap() as u32;
        let targets: Vec<u32> = case["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let emissions: Vec<f32> = case["emissions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let got = forced_align(&emissions, vocabulary, &targets, blank);
        let kind = case["kind"].as_str().unwrap();
        match case["error"].as_str() {
            Some(error) => {
                *seen.entry(format!("{kind}: {error}")).or_default() += 1;
                let matches = match error {
                    "too_short" => matches!(got, Err(AlignError::TooShort { .. })),
                    "out_of_range" => matches!(got, Err(AlignError::TokenOutOfRange { .. })),
                    "empty" => matches!(got, Err(AlignError::EmptyTarget)),
                    other => panic!("case {i}: unknown error {other}"),
                };
                assert!(
                    matches,
                    "case {i} ({kind}): the port says {error}, we say {got:?}"
                );
            }
            None => {
                *seen.entry(kind.to_string()).or_default() += 1;
                let got = got.unwrap_or_else(|e| panic!("case {i} ({kind}): {e}"));
                let path: Vec<u32> = case["path"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(got.labels, path, "case {i} ({kind}): paths differ");
                let scores: Vec<f32> = case["scores"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                assert_eq!(got.scores, scores, "case {i} ({kind}): scores differ");
                let spans = merge_tokens(&got.labels, &got.scores, blank);
                let expected = case["spans"].as_array().unwrap();
                assert_eq!(spans.len(), expected.len(), "case {i}: span counts differ");
                for (span, want) in spans.iter().zip(expected) {
                    assert_eq!(
                        (span.token, span.start, span.end, span.score),
                        (
                            want["token"].as_u64().unwrap() as u32,
                            want["start"].as_u64().unwrap() as usize,
                            want["end"].as_u64().unwrap() as usize,
                            want["score"].as_f64().unwrap() as f32
                        ),
                        "case {i}: spans differ"
                    );
                }
            }
        }
    }
    eprintln!("forced_align cases: {seen:?}");
    for kind in [
        "random",
        "repeats",
        "exact",
        "too_short: too_short",
        "out_of_range: out_of_range",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 20,
            "too few {kind} cases: {seen:?}"
        );
    }
}
