//! Synthetic interleaved speech-text data: dags/interleaved.toml on its corpus in five
//! languages — speech that Whisper reads back, Megatron shards that an independent
//! numpy reader (tests/peers/megatron_reader.py) and Python `tokenizers` read back to
//! the text that was not spoken, and units that are reproducible, reused and refit.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

fn corpus() -> String {
    repo_root()
        .join("dags/data/interleaved-corpus.jsonl")
        .display()
        .to_string()
}

/// Runs dags/interleaved.toml into `store`, its shards into `<dir>/<store>-shards`,
/// with `extra` `--set`s; the run's output.
fn run_interleaved(dir: &Path, store: &str, extra: &[&str]) -> String {
    let out = dir.join(format!("{store}-shards")).display().to_string();
    ok(&mut interleaved_command(dir, store, &out, extra))
}

/// The command running dags/interleaved.toml into `store`, its shards into `out`.
fn interleaved_command(dir: &Path, store: &str, out: &str, extra: &[&str]) -> Command {
    let dag = repo_root().join("dags/interleaved.toml");
    let mut cmd = speechmill(dir);
    cmd.args(["run", dag.to_str().unwrap(), "--store", store])
        .args(["--set", &format!("textspan.paths=[\"{}\"]", corpus())])
        .args(["--set", &format!("shard.out=\"{out}\"")]);
    for s in extra {
        cmd.args(["--set", s]);
    }
    cmd
}

/// The status (`ran` / `cached`) of `node` in a run's output table.
fn status(out: &str, node: &str) -> String {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_else(|| panic!("no row for {node} in:\n{out}"))
        .to_string()
}

#[test]
fn spoken_spans_in_five_languages_are_read_back_by_whisper() {
    let dir = tempfile::tempdir().unwrap();
    let dag = write_dag(
        dir.path(),
        "roundtrip.toml",
        &format!(
            r#"[nodes.textspan]
stage = "textspan"
params = {{ paths = ["{}"], eta = 0.5 }}

[nodes.tts]
stage = "tts"
inputs = ["textspan"]
params = {{ noise_scale = 0.0, noise_w = 0.0 }}

[nodes.asr]
stage = "asr"
inputs = ["tts"]
params = {{ model = "whisper-base", precision = "int8", beam_size = 5 }}
"#,
            corpus()
        ),
    );
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    let rows = sql_csv(
        dir.path(),
        "store",
        "SELECT t.language, t.backend, count(*), avg(wer(t.text, a.text)), avg(cer(t.text, a.text)) \
         FROM tts t JOIN asr a ON t.span_id = a.span_id GROUP BY 1, 2 ORDER BY 1",
    );
    let mut by_language = BTreeMap::new();
    for row in &rows[1..] {
        let f: Vec<&str> = row.split(',').collect();
        let (wer, cer): (f64, f64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        eprintln!(
            "round trip {} ({}, {} spans): WER {wer:.3}, CER {cer:.3}",
            f[0], f[1], f[2]
        );
        by_language.insert(f[0].to_string(), (f[1].to_string(), wer, cer));
    }
    assert_eq!(
        by_language.keys().cloned().collect::<Vec<_>>(),
        ["de", "en", "es", "fr", "it"],
        "{rows:?}"
    );
    // Piper's neural English reads back nearly word for word; espeak-ng's formant
    // voices are harder for Whisper base, but far from noise (CER ~1).
    let (backend, wer, _) = &by_language["en"];
    assert_eq!(backend, "piper");
    assert!(*wer <= 0.2, "English WER {wer}");
    for language in ["de", "es", "fr", "it"] {
        let (backend, _, cer) = &by_language[language];
        assert_eq!(backend, "espeak");
        assert!(*cer <= 0.75, "{language} CER {cer}");
    }
}

#[test]
fn token_shards_read_back_to_the_unspoken_text_and_units_are_reproducible() {
    let Some(python) = peers_python("Megatron reader") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    run_interleaved(dir.path(), "a", &[]);
    let shards = dir.path().join("a-shards");
    let files = [
        "interleaved.bin",
        "interleaved.idx",
        "interleaved.parquet",
        "preview.jsonl",
        "manifest.json",
    ];
    let first: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(shards.join(f)).unwrap())
        .collect();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shards.join("manifest.json")).unwrap())
            .unwrap();
    for key in [
        "text_vocab_size",
        "speech_offset",
        "speech_vocab_size",
        "documents",
        "tokens_text",
        "tokens_speech",
    ] {
        assert!(manifest[key].is_number(), "manifest.{key}: {manifest}");
    }
    assert_eq!(manifest["documents"], 10);
    assert_eq!(
        manifest["speech_offset"].as_u64().unwrap(),
        manifest["text_vocab_size"].as_u64().unwrap()
    );
    let (text_runs, speech_spans) = read_token_shards(&python, &shards, &manifest);
    // Sequence lengths as interleave wrote them, documents by id.
    let lengths: Vec<String> = sql_csv(
        dir.path(),
        "a",
        "SELECT n_tokens FROM interleave ORDER BY doc_id, seq_index",
    )[1..]
        .to_vec();
    let read = megatron_read(&python, &shards);
    let documents = read["documents"].as_array().unwrap();
    assert_eq!(documents.len(), 10);
    let read_lengths: Vec<String> = documents
        .iter()
        .flat_map(|d| {
            d.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_array().unwrap().len().to_string())
        })
        .collect();
    assert_eq!(read_lengths, lengths);

    // Per document: the text tokens decode with Python `tokenizers` to the spans that
    // were not spoken.
    let doc_ids: Vec<String> = sql_csv(
        dir.path(),
        "a",
        "SELECT DISTINCT doc_id FROM interleave ORDER BY doc_id",
    )[1..]
        .to_vec();
    let decoded = decode_whisper_tokens(&python, &text_runs);
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for (doc, got) in doc_ids.iter().zip(&decoded) {
        let unspoken = sql_csv(
            dir.path(),
            "a",
            &format!(
                "SELECT text FROM textspan WHERE doc_id = '{doc}' AND NOT speak ORDER BY span_index"
            ),
        );
        let want: Vec<String> = unspoken[1..]
            .iter()
            .map(|s| s.trim_matches('"').to_string())
            .collect();
        assert_eq!(squash(got), squash(&want.join(" ")), "{doc}");
    }
    let spoken = sql_csv(dir.path(), "a", "SELECT count(*) FROM tts")[1]
        .parse::<usize>()
        .unwrap();
    assert_eq!(speech_spans, spoken);

    // Units: different sentences give different units.
    let units = sql_csv(
        dir.path(),
        "a",
        "SELECT array_to_string(tokens, ' ') FROM tokenize WHERE modality = 'speech' ORDER BY span_id",
    )[1..]
        .to_vec();
    let distinct: std::collections::BTreeSet<&String> = units.iter().collect();
    assert_eq!(
        distinct.len(),
        units.len(),
        "two spoken sentences with the same units"
    );

    // The codebook is reused by a rerun and refit when k changes.
    let again = run_interleaved(dir.path(), "a", &[]);
    assert_eq!(status(&again, "fit_units"), "cached", "{again}");
    let sha = |store: &str| {
        sql_csv(dir.path(), store, "SELECT codebook_sha256 FROM fit_units")[1].clone()
    };
    let before = sha("a");
    let refit = run_interleaved(dir.path(), "a", &["fit_units.k=32"]);
    assert_eq!(status(&refit, "fit_units"), "ran", "{refit}");
    assert_eq!(status(&refit, "tokenize"), "ran", "{refit}");
    assert_ne!(sha("a"), before);
    assert_eq!(sql_csv(dir.path(), "a", "SELECT k FROM fit_units")[1], "32");

    // The same audio gives the same units, and a fresh store the same shards.
    run_interleaved(dir.path(), "b", &[]);
    assert_eq!(sha("b"), before);
    let b_units = sql_csv(
        dir.path(),
        "b",
        "SELECT array_to_string(tokens, ' ') FROM tokenize WHERE modality = 'speech' ORDER BY span_id",
    )[1..]
        .to_vec();
    assert_eq!(b_units, units);
    for (file, bytes) in files.iter().zip(&first) {
        assert_eq!(
            &std::fs::read(dir.path().join("b-shards").join(file)).unwrap(),
            bytes,
            "{file} differs between two fresh runs"
        );
    }

    // The same shards to S3 (moto): only the shard node runs again, and its objects
    // are the local files byte for byte.
    let moto = start_moto();
    create_bucket(moto.port, "tokens");
    let to_s3 = ok(s3_env(
        &mut interleaved_command(dir.path(), "b", "s3://tokens/interleaved", &[]),
        moto.port,
    ));
    assert_eq!(status(&to_s3, "tts"), "cached", "{to_s3}");
    assert_eq!(status(&to_s3, "shard"), "ran", "{to_s3}");
    for (file, bytes) in files.iter().zip(&first) {
        assert_eq!(
            &get_object(moto.port, "tokens", &format!("interleaved/{file}")),
            bytes,
            "s3://tokens/interleaved/{file}"
        );
    }
}

/// The independent reader's view of `<shards>/interleaved.{idx,bin}`: documents →
/// sequences → tokens.
fn megatron_read(python: &Path, shards: &Path) -> serde_json::Value {
    let read = ok(Command::new(python)
        .arg(repo_root().join("tests/peers/megatron_reader.py"))
        .arg(shards.join("interleaved")));
    let read: serde_json::Value = serde_json::from_str(read.trim()).unwrap();
    assert_eq!(read["dtype_code"], 8, "uint16: the vocabulary fits");
    read
}

/// Per document of the shards (read by the independent reader), its text tokens
/// (everything outside `<bos_speech> … <eos_speech>`, checked to be text ids), and
/// the number of speech spans (their ids checked to be speech ids).
fn read_token_shards(
    python: &Path,
    shards: &Path,
    manifest: &serde_json::Value,
) -> (Vec<Vec<u64>>, usize) {
    let number = |key: &str| manifest[key].as_u64().unwrap();
    let (bos, eos, offset) = (
        number("bos_speech"),
        number("eos_speech"),
        number("speech_offset"),
    );
    let read = megatron_read(python, shards);
    let mut text_runs = Vec::new();
    let mut speech_spans = 0;
    for doc in read["documents"].as_array().unwrap() {
        let mut text = Vec::new();
        let mut inside = false;
        for seq in doc.as_array().unwrap() {
            for t in seq.as_array().unwrap() {
                let t = t.as_u64().unwrap();
                if t == bos {
                    assert!(!inside);
                    inside = true;
                    speech_spans += 1;
                } else if t == eos {
                    assert!(inside);
                    inside = false;
                } else if inside {
                    assert!(t >= offset && t < bos, "speech id {t}");
                } else {
                    assert!(t < offset, "text id {t}");
                    text.push(t);
                }
            }
        }
        text_runs.push(text);
    }
    (text_runs, speech_spans)
}

/// Token ids decoded by Python `tokenizers` with Whisper base's `tokenizer.json`.
fn decode_whisper_tokens(python: &Path, runs: &[Vec<u64>]) -> Vec<String> {
    let tokenizer = cache_dir().join("models/whisper-base/tokenizer.json");
    let decoded = ok_with_stdin(
        Command::new(python)
            .arg("-c")
            .arg(
                "import json, sys\nfrom tokenizers import Tokenizer\n\
             t = Tokenizer.from_file(sys.argv[1])\n\
             print(json.dumps([t.decode(ids) for ids in json.loads(sys.stdin.read())]))",
            )
            .arg(&tokenizer),
        &serde_json::to_vec(runs).unwrap(),
    );
    serde_json::from_str(decoded.trim()).unwrap()
}

/// Runs `cmd` with `input` on its stdin: its stdout, or a panic with its stderr.
fn ok_with_stdin(cmd: &mut Command, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// textspan reads JSONL and plain text from an S3 prefix (the moto server) and
/// Parquet from a local file, with the same spans whatever the format.
#[test]
fn textspan_reads_jsonl_and_text_from_s3_and_parquet_locally() {
    let Some(python) = peers_python("Parquet corpus (pyarrow)") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let moto = start_moto();
    create_bucket(moto.port, "corpora");
    let jsonl = "{\"id\": \"a\", \"text\": \"First one. Second one.\", \"language\": \"en\"}\n\
                 {\"id\": 2, \"text\": \"Der Zug kommt. Wir warten.\", \"language\": \"de\"}\n\
                 not json\n";
    put_object(moto.port, "corpora", "text/part-1.jsonl", jsonl.as_bytes());
    put_object(
        moto.port,
        "corpora",
        "text/notes.txt",
        "The library opens at nine every morning. It closes at six in the evening, except on Sundays.".as_bytes(),
    );
    put_object(moto.port, "corpora", "text/skip.csv", b"id,text\n");
    let parquet = dir.path().join("more.parquet");
    ok(Command::new(&python).arg("-c").arg(format!(
        "import pyarrow as pa, pyarrow.parquet as pq\n\
         pq.write_table(pa.table({{'id': ['p1'], 'text': ['El tren sale. Llega tarde.'], 'language': ['es']}}), '{}')",
        parquet.display()
    )));
    let dag = write_dag(
        dir.path(),
        "spans.toml",
        &format!(
            "[nodes.textspan]\nstage = \"textspan\"\nparams = {{ paths = [\"s3://corpora/text/\", \"{}\"], eta = 0.5 }}\n",
            parquet.display()
        ),
    );
    ok(s3_env(&mut speechmill(dir.path()), moto.port).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        "store",
    ]));
    let spans = sql_csv(
        dir.path(),
        "store",
        "SELECT span_id, language, text FROM textspan ORDER BY span_id",
    );
    assert_eq!(
        spans[1..],
        [
            "2.0,de,Der Zug kommt.",
            "2.1,de,Wir warten.",
            "a.0,en,First one.",
            "a.1,en,Second one.",
            "notes.txt.0,en,The library opens at nine every morning.",
            "notes.txt.1,en,\"It closes at six in the evening, except on Sundays.\"",
            "p1.0,es,El tren sale.",
            "p1.1,es,Llega tarde.",
        ],
        "{spans:?}"
    );
    let rejects = sql_csv(dir.path(), "store", "SELECT reason FROM textspan_rejects");
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert!(
        rejects[1].contains("bad_line")
            && rejects[1].contains("s3://corpora/text/part-1.jsonl line 3"),
        "{rejects:?}"
    );
    let spoken = sql_csv(
        dir.path(),
        "store",
        "SELECT doc_id, count(*) FROM textspan WHERE speak GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(spoken[1..], ["2,1", "a,1", "notes.txt,1", "p1,1"]);
}

/// tokenize with a user's S3Tokenizer-style ONNX model (a tiny graph the test builds
/// with the same interface): its tokens are those the same maths gives on
/// faster-whisper's 128-bin log-mel of the same audio.
#[test]
fn an_onnx_speech_tokenizer_gets_whisper_log_mel_and_gives_its_tokens() {
    let Some(python) = peers_python("S3Tokenizer-style model") else {
        return;
    };
    let script = repo_root().join("tests/peers/tiny_speech_tokenizer.py");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tokenizer.onnx");
    ok(Command::new(&python).arg(&script).arg("model").arg(&model));
    let corpus = dir.path().join("corpus.jsonl");
    std::fs::write(
        &corpus,
        "{\"id\": \"d1\", \"language\": \"en\", \"text\": \"The river was high after the rain. Boats stayed in the harbour.\"}\n\
         {\"id\": \"d2\", \"language\": \"de\", \"text\": \"Heute scheint die Sonne. Morgen regnet es wieder.\"}\n",
    )
    .unwrap();
    let dag = write_dag(
        dir.path(),
        "onnx.toml",
        &format!(
            r#"[nodes.textspan]
stage = "textspan"
params = {{ paths = ["{}"], eta = 1.0 }}

[nodes.tts]
stage = "tts"
inputs = ["textspan"]
params = {{ noise_scale = 0.0, noise_w = 0.0 }}

[nodes.tokenize]
stage = "tokenize"
inputs = ["textspan", "tts"]
params = {{ speech_tokenizer = "onnx:{}", speech_vocab_size = 4096 }}
"#,
            corpus.display(),
            model.display()
        ),
    );
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    let rows = sql_json(
        dir.path(),
        "store",
        "SELECT k.span_id, k.tokens, k.speech_vocab_size, encode(t.audio, 'hex') AS audio \
         FROM tokenize k JOIN tts t ON k.span_id = t.span_id ORDER BY k.span_id",
    );
    assert_eq!(rows.len(), 4);
    let mut wavs = Vec::new();
    let mut ours = Vec::new();
    for r in &rows {
        assert_eq!(r["speech_vocab_size"], 4096);
        let hex = r["audio"].as_str().unwrap();
        let samples: Vec<f32> = (0..hex.len() / 4)
            .map(|i| {
                let b = |j: usize| {
                    u8::from_str_radix(&hex[i * 4 + j * 2..i * 4 + j * 2 + 2], 16).unwrap()
                };
                i16::from_le_bytes([b(0), b(1)]) as f32 / 32768.0
            })
            .collect();
        let wav = dir
            .path()
            .join(format!("{}.wav", r["span_id"].as_str().unwrap()));
        write_wav_16k(&wav, &samples);
        wavs.push(wav);
        let tokens: Vec<i64> = r["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect();
        // 25 per second of audio.
        let expected_len = samples.len() / 160 / 4;
        assert!(
            tokens.len().abs_diff(expected_len) <= 1,
            "{} tokens for {} samples",
            tokens.len(),
            samples.len()
        );
        ours.push(tokens);
    }
    let reference = ok(Command::new(&python).arg(&script).arg("tokens").args(&wavs));
    let reference: Vec<Vec<i64>> = serde_json::from_str(reference.trim()).unwrap();
    for ((ours, theirs), wav) in ours.iter().zip(&reference).zip(&wavs) {
        assert_eq!(ours.len(), theirs.len(), "{}", wav.display());
        let equal = ours.iter().zip(theirs).filter(|(a, b)| a == b).count();
        let close = ours.iter().zip(theirs).all(|(a, b)| (a - b).abs() <= 1);
        // f32 against numpy's f64: a mean on a floor boundary may land one off.
        assert!(
            close && equal * 100 >= ours.len() * 95,
            "{}: {ours:?} vs {theirs:?}",
            wav.display()
        );
    }
    assert_ne!(ours[0], ours[1], "two sentences, the same tokens");
}

/// dags/spiritlm.toml on the LibriVox clips and their transcripts, into `store`.
fn run_spiritlm(dir: &Path, store: &str) {
    let demo = cache_dir().join("demo-audio");
    let list = dir.join("librivox.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(demo.join("demo.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("LibriVox"))
        .map(|l| {
            // Beside the list: a run reads files under its own directory only.
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let uri = v["uri"].as_str().unwrap();
            std::fs::copy(demo.join(uri), dir.join(uri)).unwrap();
            l.to_string()
        })
        .collect();
    assert!(lines.len() >= 4, "LibriVox clips in demo.jsonl");
    std::fs::write(&list, lines.join("\n")).unwrap();
    let dag = repo_root().join("dags/spiritlm.toml");
    ok(speechmill(dir)
        .args(["run", dag.to_str().unwrap(), "--store", store])
        .args(["--set", &format!("ingest.paths=[\"{}\"]", list.display())])
        .args([
            "--set",
            &format!(
                "shard.out=\"{}\"",
                dir.join(format!("{store}-shards")).display()
            ),
        ]));
}

#[test]
fn real_speech_switches_modality_at_aligned_word_boundaries() {
    let Some(python) = peers_python("faster-whisper and Megatron reader") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    run_spiritlm(dir.path(), "s");
    let json = |q: &str| sql_json(dir.path(), "s", q);
    // Every aligned word is in exactly one run, in order; runs alternate.
    let aligned = json("SELECT segment_id, words FROM align ORDER BY segment_id");
    let runs = json(
        "SELECT doc_id, span_index, speak, text, start_s, end_s, \
         length(encode(audio, 'hex')) / 2 AS bytes \
         FROM wordspan ORDER BY doc_id, span_index",
    );
    assert!(aligned.len() >= 4);
    for segment in &aligned {
        let id = segment["segment_id"].as_str().unwrap();
        let words: Vec<&str> = segment["words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["word"].as_str().unwrap())
            .collect();
        let mine: Vec<&serde_json::Value> = runs.iter().filter(|r| r["doc_id"] == id).collect();
        let joined: Vec<&str> = mine
            .iter()
            .flat_map(|r| r["text"].as_str().unwrap().split(' '))
            .collect();
        assert_eq!(joined, words, "{id}");
        for pair in mine.windows(2) {
            assert_ne!(pair[0]["speak"], pair[1]["speak"], "{id}");
            assert!(pair[0]["end_s"].as_f64() <= pair[1]["start_s"].as_f64());
        }
        for r in &mine {
            let n = r["text"].as_str().unwrap().split(' ').count();
            assert!(n <= 10, "{r}");
            let seconds = r["end_s"].as_f64().unwrap() - r["start_s"].as_f64().unwrap();
            if r["speak"] == true {
                let samples = r["bytes"].as_f64().unwrap() / 2.0;
                assert!((samples - seconds * 16_000.0).abs() <= 2.0, "{r}");
            } else {
                assert!(r["bytes"].is_null(), "a written run keeps no audio: {r}");
            }
        }
    }

    // The spoken runs' audio says their words (faster-whisper tiny.en, independent of
    // speechmill's models' use here); each run's text against the next run's audio
    // does not.
    let spoken = json(
        "SELECT text, encode(audio, 'base64') AS pcm FROM wordspan WHERE speak ORDER BY span_id",
    );
    assert!(spoken.len() >= 6, "{} spoken runs", spoken.len());
    let script = "import base64, json, sys\nimport numpy as np, jiwer\n\
        sys.path.insert(0, sys.argv[2])\nfrom textnorm import normalise\n\
        from faster_whisper import WhisperModel\n\
        m = WhisperModel(sys.argv[1], device='cpu', compute_type='int8', cpu_threads=2)\n\
        runs = json.loads(sys.stdin.read())\nhyps = []\n\
        for r in runs:\n\
        \x20   pcm = np.frombuffer(base64.b64decode(r['pcm'] + '=' * (-len(r['pcm']) % 4)), '<i2').astype(np.float32) / 32768\n\
        \x20   segs, _ = m.transcribe(pcm, language='en', beam_size=1, vad_filter=False)\n\
        \x20   hyps.append(' '.join(s.text for s in segs))\n\
        refs = [normalise(r['text']) for r in runs]\nhyps = [normalise(h) for h in hyps]\n\
        shifted = refs[1:] + refs[:1]\n\
        print(json.dumps([jiwer.wer(refs, hyps), jiwer.wer(shifted, hyps)]))";
    let wers = ok_with_stdin(
        Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(cache_dir().join("models/whisper-tiny.en-ct2"))
            .arg(repo_root().join("tests/peers")),
        &serde_json::to_vec(&spoken).unwrap(),
    );
    let wers: Vec<f64> = serde_json::from_str(wers.trim()).unwrap();
    eprintln!(
        "spoken runs' WER: own text {:.3}, shifted text {:.3}",
        wers[0], wers[1]
    );
    assert!(
        wers[0] < 0.35,
        "spoken runs' audio against their text: WER {}",
        wers[0]
    );
    assert!(
        wers[1] > 0.8,
        "spoken runs' audio against other text: WER {}",
        wers[1]
    );

    // The shards: written runs' tokens decode to their text, spoken runs are units.
    let shards = dir.path().join("s-shards");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shards.join("manifest.json")).unwrap())
            .unwrap();
    let (text_runs, speech_spans) = read_token_shards(&python, &shards, &manifest);
    let decoded = decode_whisper_tokens(&python, &text_runs);
    let doc_ids: Vec<String> = sql_csv(
        dir.path(),
        "s",
        "SELECT DISTINCT doc_id FROM interleave ORDER BY doc_id",
    )[1..]
        .to_vec();
    assert_eq!(doc_ids.len(), aligned.len());
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for (doc, got) in doc_ids.iter().zip(&decoded) {
        let want: Vec<String> = runs
            .iter()
            .filter(|r| r["doc_id"] == doc.as_str() && r["speak"] == false)
            .map(|r| r["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(squash(got), squash(&want.join(" ")), "{doc}");
    }
    let spoken_runs = runs.iter().filter(|r| r["speak"] == true).count();
    assert_eq!(speech_spans, spoken_runs);
}

#[test]
fn piper_word_times_equal_piper_tts_own_alignments() {
    let Some(python) = peers_python("piper-tts alignments") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Speech models learn from very large corpora, cut into short pieces.",
        "Where are the trains to Edinburgh and Glasgow this evening?",
    ];
    let corpus: Vec<String> = sentences
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": format!("d{i}"), "text": t, "language": "en"}).to_string()
        })
        .collect();
    std::fs::write(dir.path().join("c.jsonl"), corpus.join("\n")).unwrap();
    let dag = write_dag(
        dir.path(),
        "tts.toml",
        r#"[nodes.textspan]
stage = "textspan"
params = { paths = ["c.jsonl"], eta = 1.0 }

[nodes.tts]
stage = "tts"
inputs = ["textspan"]
params = { noise_scale = 0.0, noise_w = 0.0 }
"#,
    );
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "t"]));
    let rows = sql_json(
        dir.path(),
        "t",
        "SELECT text, backend, duration_s, words FROM tts ORDER BY doc_id",
    );
    // piper-tts itself (its model patched in memory for the same durations) on the same
    // phonemes: the system's espeak-ng program, as speechmill phonemizes (piper-tts's
    // bundled espeak-ng data is another version and reads some words differently,
    // which moves every duration of the sentence); clauses joined by ", " (these texts'
    // only inner punctuation), then the final mark. Word times from its phonemes:
    // words between spaces, each phoneme with its pad, punctuation in none.
    let script = "import json, subprocess, sys\nfrom piper import PiperVoice, SynthesisConfig\n\
        v = PiperVoice.load(sys.argv[1], include_alignments=True)\n\
        cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)\nout = []\n\
        for text in json.loads(sys.stdin.read()):\n\
        \x20   ipa = subprocess.run(['espeak-ng', '-q', '--ipa', '-v', 'en-us'], input=text, text=True, capture_output=True, check=True).stdout\n\
        \x20   lines = [l.strip() for l in ipa.replace('\\u200d', '').replace('_', '').splitlines() if l.strip()]\n\
        \x20   phonemes = list(', '.join(lines) + text[-1])\n\
        \x20   audio, n = v.phoneme_ids_to_audio(v.phonemes_to_ids(phonemes), cfg, include_alignments=True)\n\
        \x20   assert n is not None, 'no alignments'\n\
        \x20   words, cur, pos = [], None, 2\n\
        \x20   t = int(n[0]) + int(n[1])\n\
        \x20   for p in phonemes:\n\
        \x20       if v.config.phoneme_id_map.get(p) is None:\n\
        \x20           continue\n\
        \x20       span = int(n[pos]) + int(n[pos + 1])\n\
        \x20       if p == ' ':\n\
        \x20           cur = None\n\
        \x20       elif p not in ',.;:!?':\n\
        \x20           if cur is None:\n\
        \x20               cur = [t, t]\n\
        \x20               words.append(cur)\n\
        \x20           cur[1] = t + span\n\
        \x20       t += span\n\
        \x20       pos += 2\n\
        \x20   out.append([[a / 22050, b / 22050] for a, b in words])\n\
        print(json.dumps(out))";
    let voice = cache_dir().join("models/piper/en_US-joe-medium.onnx");
    let want = ok_with_stdin(
        Command::new(&python).arg("-c").arg(script).arg(&voice),
        &serde_json::to_vec(&sentences).unwrap(),
    );
    let want: Vec<Vec<(f64, f64)>> = serde_json::from_str(want.trim()).unwrap();
    let mut worst: f64 = 0.0;
    for (row, want) in rows.iter().zip(&want) {
        assert_eq!(row["backend"], "piper", "{row}");
        let words = row["words"]
            .as_array()
            .unwrap_or_else(|| panic!("no words: {row}"));
        let text: Vec<&str> = row["text"].as_str().unwrap().split_whitespace().collect();
        let got: Vec<&str> = words.iter().map(|w| w["word"].as_str().unwrap()).collect();
        assert_eq!(got, text, "every word as written");
        assert_eq!(words.len(), want.len(), "{row}");
        for (w, (a, b)) in words.iter().zip(want) {
            let (s, e) = (w["start_s"].as_f64().unwrap(), w["end_s"].as_f64().unwrap());
            worst = worst.max((s - a).abs()).max((e - b).abs());
            assert!(
                s < e && e <= row["duration_s"].as_f64().unwrap() + 1e-3,
                "{w}"
            );
        }
    }
    eprintln!(
        "largest difference from piper-tts's word times: {:.1} ms",
        worst * 1000.0
    );
    assert!(worst < 0.015, "word times {worst} s from piper-tts's");
}
