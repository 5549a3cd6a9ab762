//! Whisper speech recognition on converted ONNX graphs, decoding the way
//! faster-whisper does on the same weights: log-mel front end, batched encoder,
//! decoder with a KV cache, greedy / beam search, temperature fallback on
//! compression ratio and average log-probability, the no-speech skip, language
//! detection, and word timestamps by DTW over the alignment heads.
//!
//! A model directory (made by `models/tools/whisper_to_onnx.py`, or laid out the same
//! way by hand) holds `encoder.onnx`, `decoder.onnx` with its weights in
//! `decoder.onnx.data`, optionally `encoder_int8.onnx` and `decoder_int8.onnx` (with
//! `decoder_int8.onnx.data`), `tokenizer.json` and `whisper.json`.

mod align;
mod config;
mod logits;
mod mel;
mod model;
mod profile;
mod text;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;

use logits::{log_softmax, log_sum_exp, sample_softmax, softmax_prob, top_k};
use profile::timed;

pub use config::{SpecialTokens, WhisperConfig};
pub use mel::{HOP, LogMel, MelExtractor, SAMPLE_RATE, WINDOW_FRAMES, WINDOW_SAMPLES};
pub use model::{CrossGather, CrossKv, CrossView, KvCache, WhisperSessions};
pub use profile::{Profile, ProfileSnapshot};
pub use text::{TimedWord, WhisperTokenizer, compression_ratio};

use crate::runtime::{
    ModelError, ModelRef, Result, SessionConfig, resolve_model, shared, shared_model,
};

/// Decoder rows (windows × beams) per call.
const MAX_DECODER_ROWS: usize = 64;

/// Tokens per decoder call of a teacher-forced pass (word timings, text alignment):
/// each call's logits are tokens × vocabulary (13 MB for 64 tokens), which the whole
/// text at once would hold many times over in every decoder thread.
const FORCED_CHUNK_TOKENS: usize = 64;

/// The encoder output one decoder thread's group of windows may hold (see
/// [`Precision::decode_windows`]).
const DECODE_GROUP_BYTES: usize = 40 << 20;

/// Which decoder graph to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// fp32 encoder and decoder.
    #[default]
    Fp32,
    /// int8 weights in the encoder and decoder (blockwise, with int8 activations per
    /// block): the fastest on CPU.
    Int8,
    /// The int8 decoder with the encoder quantized as CTranslate2 does it (weights per
    /// column, activations per row, `MatMulInteger`): ONNX Runtime runs it on its
    /// integer GEMM, which has AMX kernels where `MatMulNBits` has none; on an AVX-512
    /// VNNI CPU without AMX its encoder was 18-22% faster than [`Precision::Int8`]'s but
    /// its output 1.4x as far from fp32's, so it is a choice, not the default.
    Int8Rows,
}

/// The models setup converts into `<cache>/models/` (`models/tools/whisper_to_onnx.py`).
pub const CONVERTED: [&str; 2] = ["whisper-base", "whisper-tiny.en"];

/// The files of a model directory every precision reads.
pub const COMMON_FILES: [&str; 2] = ["whisper.json", "tokenizer.json"];

impl Precision {
    /// Windows a decoder thread waits for and steps together, for a model whose
    /// encoder output is `cross_bytes_per_window` per window. An fp32 decoder step
    /// reads all of the decoder's weights whatever its rows (tiny.en's fp32 vocabulary
    /// projection alone is 80 MB), so several windows' beams cost much less than
    /// one window's each (on the long files, tiny.en: 30 ms per step of 18 rows
    /// against 17 ms for 5); an int8 step costs in proportion to its rows (24 against
    /// 7 ms), so there waiting for more windows only delays the decoders. Each window
    /// in a group holds its encoder output and its beams' self-attention cache, so
    /// the group is kept within [`DECODE_GROUP_BYTES`] of encoder output: two windows
    /// of tiny.en, one of base (measured on bench-asr, tiny.en fp32, whole process:
    /// 1.11× the speed at 1.09× the peak RSS with two; 1.16× at 1.41× with four;
    /// base fp32 with two: 1.02× at 1.19×).
    fn decode_windows(self, cross_bytes_per_window: usize) -> usize {
        match self {
            Precision::Fp32 => (DECODE_GROUP_BYTES / cross_bytes_per_window.max(1)).clamp(1, 4),
            Precision::Int8 | Precision::Int8Rows => 1,
        }
    }

    /// Every precision.
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Int8, Precision::Int8Rows];

    /// The encoder and decoder files of this precision, and the decoder's weights (its
    /// external data, which every decoder session shares).
    pub fn files(self) -> [&'static str; 3] {
        match self {
            Precision::Fp32 => ["encoder.onnx", "decoder.onnx", "decoder.onnx.data"],
            Precision::Int8 => [
                "encoder_int8.onnx",
                "decoder_int8.onnx",
                "decoder_int8.onnx.data",
            ],
            Precision::Int8Rows => [
                "encoder_int8_rows.onnx",
                "decoder_int8.onnx",
                "decoder_int8.onnx.data",
            ],
        }
    }

    /// Every file a model directory loads at this precision, in the order its
    /// fingerprint hashes them.
    pub fn all_files(self) -> [&'static str; 5] {
        let [encoder, decoder, weights] = self.files();
        [COMMON_FILES[0], COMMON_FILES[1], encoder, decoder, weights]
    }
}

impl std::str::FromStr for Precision {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            "int8-rows" => Ok(Precision::Int8Rows),
            other => Err(ModelError::InvalidConfig(format!(
                "precision `{other}`: expected fp32, int8 or int8-rows"
            ))),
        }
    }
}

/// How to decode (faster-whisper's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// `None` detects the language (multilingual models); English-only models ignore it.
    pub language: Option<String>,
    /// 1 = greedy.
    pub beam_size: usize,
    pub patience: f64,
    /// Samples drawn at each temperature above 0.
    pub best_of: usize,
    pub temperatures: Vec<f64>,
    pub compression_ratio_threshold: Option<f64>,
    pub log_prob_threshold: Option<f64>,
    pub no_speech_threshold: Option<f64>,
    pub word_timestamps: bool,
    /// Seed of the sampler used by temperature fallback (results are deterministic).
    pub seed: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            language: None,
            beam_size: 5,
            patience: 1.0,
            best_of: 5,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            log_prob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            word_timestamps: true,
            seed: 0,
        }
    }
}

/// A word and when it is spoken, in seconds from the start of the segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f64,
}

/// The transcript of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// Generated text tokens (no prompt, no end of text).
    pub tokens: Vec<u32>,
    pub language: String,
    pub language_prob: f64,
    pub avg_logprob: f64,
    pub no_speech_prob: f64,
    pub compression_ratio: f64,
    /// Temperature of the kept decoding (0 unless fallback kicked in).
    pub temperature: f64,
    /// True when the segment was judged silence (no-speech prob above threshold and a
    /// low average log-probability): `text` is then empty.
    pub no_speech: bool,
    pub words: Vec<Word>,
}

/// A loaded Whisper model: sessions, tokenizer and front end.
pub struct Whisper {
    sessions: WhisperSessions,
    tokenizer: WhisperTokenizer,
    mel: MelExtractor,
    dir: PathBuf,
    id: String,
    /// See [`Precision::decode_windows`].
    decode_windows: usize,
    /// See [`FORCED_CHUNK_TOKENS`].
    forced_chunk_tokens: usize,
}

impl std::fmt::Debug for Whisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whisper")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// `whisper-base`, `whisper-tiny.en:int8`, …: the directory's name and the precision.
fn model_id(dir: &Path, precision: Precision) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string());
    match precision {
        Precision::Fp32 => name,
        Precision::Int8 => format!("{name}:int8"),
        Precision::Int8Rows => format!("{name}:int8-rows"),
    }
}

/// A file missing from a directory of one's own (not one setup converts, e.g. one
/// converted before `encoder_int8_rows.onnx` existed) is fixed by converting again, not
/// by setup.
fn own_directory_hint(name: &str, dir: &Path, e: ModelError) -> ModelError {
    match e {
        ModelError::MissingFile { path } if !CONVERTED.contains(&name) => {
            ModelError::MissingConvertedFile {
                path,
                dir: dir.to_path_buf(),
            }
        }
        e => e,
    }
}

/// `(language token, code, probability)`; no token for English-only models.
type Language = (Option<u32>, String, f64);

/// A batch of segments through the encoder, ready to decode.
struct Encoded {
    cross: CrossKv,
    /// Mel frames with audio, per segment (the rest of the 30 s window is padding).
    content_frames: Vec<usize>,
}

/// Windows a decoder thread takes at once ([`Whisper::take_windows`]).
struct Taken {
    /// The windows joined into one batch, and each encoder batch's index and windows.
    batch: Option<(Encoded, Vec<(usize, usize)>)>,
    /// The batch the encoder failed on, after those.
    failed: Option<(usize, ModelError)>,
}

/// One hypothesis being decoded.
#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<u32>,
    sum_logprob: f64,
}

/// The result of one decoding attempt of one segment.
#[derive(Debug, Clone)]
struct Attempt {
    tokens: Vec<u32>,
    avg_logprob: f64,
    text: String,
    compression_ratio: f64,
    temperature: f64,
}

impl Whisper {
    /// The model directory for a name: `whisper-base`, `whisper-tiny.en` (converted by
    /// setup into the cache) or a path to a directory laid out the same way.
    pub fn resolve(name: &str) -> Result<PathBuf> {
        resolve_model(name)
    }

    /// Loads `dir` with the decoder of `precision`.
    pub fn load(dir: &Path, precision: Precision, session: &SessionConfig) -> Result<Self> {
        let config = WhisperConfig::load(&dir.join("whisper.json"))?;
        let tokenizer = WhisperTokenizer::load(&dir.join("tokenizer.json"), config.tokens.eot)?;
        let [encoder, decoder, _] = precision.files();
        let mel = MelExtractor::new(config.n_mels);
        let sessions =
            WhisperSessions::load(config, &dir.join(encoder), &dir.join(decoder), session)?;
        let decode_windows = precision.decode_windows(sessions.cross_bytes_per_window());
        Ok(Whisper {
            decode_windows,
            forced_chunk_tokens: FORCED_CHUNK_TOKENS,
            sessions,
            tokenizer,
            mel,
            dir: dir.to_path_buf(),
            id: model_id(dir, precision),
        })
    }

    /// Tokens per decoder call of a teacher-forced pass (see [`FORCED_CHUNK_TOKENS`]);
    /// for tests that check the results do not depend on it.
    #[doc(hidden)]
    pub fn set_forced_chunk_tokens(&mut self, tokens: usize) {
        self.forced_chunk_tokens = tokens.max(1);
    }

    /// `load`, once per process per directory, precision and session config.
    pub fn shared(dir: &Path, precision: Precision, session: &SessionConfig) -> Result<Arc<Self>> {
        let key = format!("{}|{precision:?}|{session:?}", dir.display());
        shared(&key, || Self::load(dir, precision, session))
    }

    /// The model `name` (as [`resolve`](Self::resolve) takes it) at `precision`, with the
    /// sha256 of every file it loads: what the client fingerprints an `asr` node with
    /// and carries in its plan.
    pub fn model_ref(name: &str, precision: Precision) -> Result<ModelRef> {
        let dir = Self::resolve(name)?;
        ModelRef::hashed(model_id(&dir, precision), name, &precision.all_files())
            .map_err(|e| own_directory_hint(name, &dir, e))
    }

    /// The model a plan names, verified against its hashes (once per process) and
    /// loaded once per process, files and session config.
    pub fn shared_verified(
        model: &ModelRef,
        precision: Precision,
        session: &SessionConfig,
    ) -> Result<Arc<Self>> {
        shared_model(model, session, |dir, session| {
            Self::load(dir, precision, session)
        })
    }

    /// The sha256 over the files this model reads (for fingerprints): the concatenated
    /// sha256s of [`Precision::all_files`], as [`ModelRef::sha256`] gives them.
    pub fn files_sha256(dir: &Path, precision: Precision) -> Result<String> {
        let location = dir.to_string_lossy();
        Ok(ModelRef::hashed(model_id(dir, precision), &location, &precision.all_files())?.sha256())
    }

    /// `whisper-base`, `whisper-tiny.en:int8`, …
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.sessions.config
    }

    /// Where this model's time went since it was loaded (see [`Profile`]).
    pub fn profile(&self) -> &Profile {
        self.sessions.profile()
    }

    pub fn tokenizer(&self) -> &WhisperTokenizer {
        &self.tokenizer
    }

    /// Log-mel features of 16 kHz mono audio.
    pub fn log_mel(&self, samples: &[f32]) -> LogMel {
        self.mel.compute(samples)
    }

    /// Transcribes segments of 16 kHz mono audio, each at most 30 s, encoding up to
    /// `batch_size` of them per encoder call and decoding them together. With more
    /// than one batch, one thread computes log-mel and encoder output ahead while the
    /// decoder threads (one per decoder session) decode and align the batches it
    /// hands on: every call is single-threaded work, which scales better than each
    /// model call on two threads, and with three such threads on two cores neither a
    /// slow encoder (base) nor a slow decoder (tiny) leaves a core idle. Where the
    /// decoder's steps are bound by reading its weights (fp32, small models), a
    /// decoder thread takes the next few batches and steps their beams together
    /// ([`Precision::decode_windows`]).
    pub fn transcribe(
        &self,
        segments: &[&[f32]],
        options: &DecodeOptions,
        batch_size: usize,
    ) -> Result<Vec<Transcript>> {
        if let Some(i) = segments.iter().position(|s| s.len() > WINDOW_SAMPLES) {
            return Err(ModelError::InvalidInput(format!(
                "segment {i} is {:.1} s long; Whisper takes at most 30 s per segment",
                segments[i].len() as f64 / SAMPLE_RATE as f64
            )));
        }
        let batches: Vec<&[&[f32]]> = segments.chunks(batch_size.max(1)).collect();
        let mut out = Vec::with_capacity(segments.len());
        if batches.len() <= 1 {
            for batch in batches {
                out.extend(self.decode_batch(self.encode_batch(batch)?, options)?);
            }
            return Ok(out);
        }
        let workers = self.sessions.decoders();
        let group = self.decode_windows;
        let stop = AtomicBool::new(false);
        let mut decoded: Vec<(usize, Result<Vec<Transcript>>)> = std::thread::scope(|scope| {
            // The encoder runs ahead on its own thread while `workers` threads decode
            // the batches it hands on, each with a decoder session of its own. Which
            // side is the bottleneck depends on the model (the encoder for base, the
            // decoder for tiny); with more threads than cores the OS gives the cores
            // to whichever have work, so none waits on a fixed split. Only the decoder
            // threads hold the receiving end: once they have all stopped (done, failed
            // or panicked) the encoder's next send fails and it stops too, instead of
            // waiting forever on a full queue.
            let (to_decode, encoded) = sync_channel::<(usize, Result<Encoded>)>(0);
            let encoded = Arc::new(Mutex::new(encoded));
            let to_encode = batches.clone();
            let stop = &stop;
            scope.spawn(move || {
                for (i, batch) in to_encode.into_iter().enumerate() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = self.encode_batch(batch);
                    let failed = result.is_err();
                    let wait = &self.profile().encoder_wait_ns;
                    if timed(wait, || to_decode.send((i, result))).is_err() || failed {
                        break;
                    }
                }
            });
            let decoders: Vec<_> = (0..workers)
                .map(|_| {
                    let encoded = Arc::clone(&encoded);
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            let Taken { batch, failed } =
                                timed(&self.profile().decoder_wait_ns, || {
                                    let queue = encoded.lock().unwrap_or_else(|p| p.into_inner());
                                    self.take_windows(&queue, group, batch_size)
                                });
                            if batch.is_none() && failed.is_none() {
                                break;
                            }
                            if let Some((batch, parts)) = batch {
                                match self.decode_batch(batch, options) {
                                    Ok(mut transcripts) => {
                                        for (i, k) in parts {
                                            let rest = transcripts.split_off(k);
                                            done.push((i, Ok(transcripts)));
                                            transcripts = rest;
                                        }
                                    }
                                    Err(e) => {
                                        stop.store(true, Ordering::Relaxed);
                                        done.push((parts[0].0, Err(e)));
                                    }
                                }
                            }
                            if let Some((i, e)) = failed {
                                stop.store(true, Ordering::Relaxed);
                                done.push((i, Err(e)));
                            }
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                        done
                    })
                })
                .collect();
            drop(encoded);
            decoders
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        decoded.sort_by_key(|(i, _)| *i);
        for (_, result) in decoded {
            out.extend(result?);
        }
        Ok(out)
    }

    /// The next `group` windows from the encoder (fewer once it is done), each joining
    /// one batch as it comes so that no window is held twice; the next batch as it is
    /// when the encoder's batches are that large already.
    fn take_windows(
        &self,
        queue: &Receiver<(usize, Result<Encoded>)>,
        group: usize,
        batch_size: usize,
    ) -> Taken {
        let gathering = group > batch_size;
        let mut gather = gathering.then(|| self.sessions.gather_cross(group - 1 + batch_size));
        let mut single = None;
        let mut content_frames = Vec::new();
        let mut parts = Vec::new();
        let mut failed = None;
        let want = if gathering { group } else { 1 };
        let mut windows = 0;
        while windows < want {
            let Ok((i, result)) = queue.recv() else { break };
            let encoded = match result {
                Ok(encoded) => encoded,
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            };
            windows += encoded.cross.batch;
            parts.push((i, encoded.cross.batch));
            content_frames.extend_from_slice(&encoded.content_frames);
            match gather.as_mut() {
                Some(g) => {
                    let joined = g.push(encoded.cross);
                    assert!(joined, "a decoder group outgrew its capacity");
                }
                None => single = Some(encoded.cross),
            }
        }
        let cross = match gather {
            Some(g) if !parts.is_empty() => Some(g.finish()),
            _ => single,
        };
        Taken {
            batch: cross.map(|cross| {
                let batch = Encoded {
                    cross,
                    content_frames,
                };
                (batch, parts)
            }),
            failed,
        }
    }

    /// Frame features of 16 kHz audio of any length at 50 Hz (one per encoder frame,
    /// 20 ms), `dim` = the model's width each: the keys the last decoder layer's
    /// cross-attention reads, a linear map of the encoder's final states (the
    /// converted graph's encoder ends there). Audio is encoded in 30 s windows; frames
    /// past each window's audio are dropped. Returns frames × dim (row-major) and dim.
    pub fn encoder_frames(&self, samples: &[f32]) -> Result<(Vec<f32>, usize)> {
        let c = self.config();
        let (heads, dh, s) = (c.n_heads, c.head_dim(), c.n_audio_ctx);
        let dim = heads * dh;
        let mut out = Vec::new();
        let windows: Vec<&[f32]> = samples.chunks(WINDOW_SAMPLES).collect();
        for batch in windows.chunks(4) {
            let encoded = self.encode_batch(batch)?;
            let w = encoded.cross.batch;
            let layer = w * heads * s * dh;
            let last = &encoded.cross.k()[(c.n_dec_layers - 1) * layer..c.n_dec_layers * layer];
            for (i, &mel_frames) in encoded.content_frames.iter().enumerate() {
                let frames = mel_frames.div_ceil(2).min(s);
                let window = &last[i * heads * s * dh..(i + 1) * heads * s * dh];
                for f in 0..frames {
                    for h in 0..heads {
                        let at = (h * s + f) * dh;
                        out.extend_from_slice(&window[at..at + dh]);
                    }
                }
            }
        }
        Ok((out, dim))
    }

    /// Log-mel features and encoder output of a batch of segments.
    fn encode_batch(&self, segments: &[&[f32]]) -> Result<Encoded> {
        let c = self.config();
        let n = segments.len();
        let mut mel = Vec::with_capacity(n * c.n_mels * WINDOW_FRAMES);
        let mut content_frames = Vec::with_capacity(n);
        timed(&self.profile().mel_ns, || {
            for s in segments {
                let features = self.mel.compute(s);
                let frames = features.content_frames().min(WINDOW_FRAMES);
                features.window_into(0, frames, &mut mel);
                content_frames.push(frames);
            }
        });
        let cross = self.sessions.encode(&mel, n)?;
        Ok(Encoded {
            cross,
            content_frames,
        })
    }

    fn decode_batch(&self, encoded: Encoded, options: &DecodeOptions) -> Result<Vec<Transcript>> {
        timed(&self.profile().decode_batch_ns, || {
            self.decode_batch_untimed(encoded, options)
        })
    }

    fn decode_batch_untimed(
        &self,
        encoded: Encoded,
        options: &DecodeOptions,
    ) -> Result<Vec<Transcript>> {
        let Encoded {
            cross,
            content_frames,
        } = encoded;
        let n = cross.batch;

        // Language (detected or given) and the no-speech probability, both read from
        // the logits at <|startoftranscript|>: from a decoder call of their own when the
        // language is detected, else from the first decoding's first step (which sees
        // <|startoftranscript|> first too) to save that call.
        let (languages, mut no_speech): (Vec<Language>, Vec<Option<f64>>) =
            match self.given_language(options)? {
                Some(language) => (vec![language; n], vec![None; n]),
                None => {
                    let first = self.first_position(&cross)?;
                    (
                        first
                            .iter()
                            .map(|l| self.detect_language(l))
                            .collect::<Result<_>>()?,
                        first.iter().map(|l| Some(self.no_speech_prob(l))).collect(),
                    )
                }
            };
        let prompts: Vec<Vec<u32>> = languages
            .iter()
            .map(|(lang_token, _, _)| self.prompt(*lang_token))
            .collect();

        // Decode with temperature fallback: every segment still "failing" is retried
        // at the next temperature, together with the others.
        let mut best: Vec<Option<Attempt>> = vec![None; n];
        let mut all_attempts: Vec<Vec<Attempt>> = vec![Vec::new(); n];
        let mut pending: Vec<usize> = (0..n).collect();
        let mut rng = StdRng::seed_from_u64(options.seed);
        for &temperature in &options.temperatures {
            if pending.is_empty() {
                break;
            }
            let rows: Vec<usize> = pending.clone();
            // A window's beams (or samples) share its cross-attention tensors; the
            // rows of one call are bounded to keep the self-attention cache small.
            let width = if temperature <= 0.0 {
                options.beam_size
            } else {
                options.best_of
            }
            .max(1);
            let mut results = Vec::with_capacity(rows.len());
            for group in rows.chunks((MAX_DECODER_ROWS / width).max(1)) {
                let whole =
                    group.len() == cross.batch && group.iter().enumerate().all(|(i, &r)| i == r);
                let selected;
                let sub_cross = if whole {
                    cross.view()
                } else {
                    selected = self.sessions.select_cross(cross.view(), group);
                    selected.view()
                };
                let sub_prompts: Vec<Vec<u32>> =
                    group.iter().map(|&r| prompts[r].clone()).collect();
                let (hypotheses, first_no_speech) = if temperature <= 0.0 {
                    self.beam_search(sub_cross, &sub_prompts, width, options.patience)?
                } else {
                    self.sample(sub_cross, &sub_prompts, width, temperature, &mut rng)?
                };
                for (&row, p) in group.iter().zip(first_no_speech) {
                    no_speech[row].get_or_insert(p);
                }
                results.extend(hypotheses);
            }
            let mut still = Vec::new();
            for (&row, hyp) in rows.iter().zip(results) {
                let attempt = self.attempt(hyp, temperature);
                let mut needs_fallback = false;
                if let Some(t) = options.compression_ratio_threshold
                    && attempt.compression_ratio > t
                {
                    needs_fallback = true;
                }
                if let Some(t) = options.log_prob_threshold
                    && attempt.avg_logprob < t
                {
                    needs_fallback = true;
                }
                if let (Some(ns), Some(lp)) =
                    (options.no_speech_threshold, options.log_prob_threshold)
                    && no_speech[row].unwrap_or(0.0) > ns
                    && attempt.avg_logprob < lp
                {
                    needs_fallback = false; // silence: do not retry
                }
                all_attempts[row].push(attempt.clone());
                if needs_fallback {
                    still.push(row);
                } else {
                    best[row] = Some(attempt);
                }
            }
            pending = still;
        }
        // Every temperature failed: keep the best attempt below the compression
        // threshold (by average log-probability), else the best of all.
        for row in pending {
            let attempts = &all_attempts[row];
            let below: Vec<&Attempt> = attempts
                .iter()
                .filter(|a| {
                    options
                        .compression_ratio_threshold
                        .is_none_or(|t| a.compression_ratio <= t)
                })
                .collect();
            let pool: Vec<&Attempt> = if below.is_empty() {
                attempts.iter().collect()
            } else {
                below
            };
            best[row] = pool
                .into_iter()
                .max_by(|a, b| a.avg_logprob.total_cmp(&b.avg_logprob))
                .cloned();
        }

        let mut transcripts = Vec::with_capacity(n);
        for row in 0..n {
            let attempt = best[row].take().unwrap_or(Attempt {
                tokens: Vec::new(),
                avg_logprob: 0.0,
                text: String::new(),
                compression_ratio: 0.0,
                temperature: 0.0,
            });
            let (_, ref language, language_prob) = languages[row];
            let silent = matches!(
                (options.no_speech_threshold, options.log_prob_threshold),
                (Some(ns), Some(lp)) if no_speech[row].unwrap_or(0.0) > ns && attempt.avg_logprob < lp
            );
            let words = if options.word_timestamps && !silent && !attempt.tokens.is_empty() {
                self.word_timestamps(
                    cross.window(row),
                    &prompts[row],
                    &attempt.tokens,
                    content_frames[row],
                    language,
                )?
            } else {
                Vec::new()
            };
            transcripts.push(Transcript {
                text: if silent {
                    String::new()
                } else {
                    attempt.text.clone()
                },
                tokens: if silent {
                    Vec::new()
                } else {
                    attempt.tokens.clone()
                },
                language: language.clone(),
                language_prob,
                avg_logprob: attempt.avg_logprob,
                no_speech_prob: no_speech[row].unwrap_or(0.0),
                compression_ratio: attempt.compression_ratio,
                temperature: attempt.temperature,
                no_speech: silent,
                words,
            });
        }
        Ok(transcripts)
    }

    /// Logits at the `<|startoftranscript|>` position of every row (`[V]` each).
    fn first_position(&self, cross: &CrossKv) -> Result<Vec<Vec<f32>>> {
        let c = self.config();
        let tokens = vec![c.tokens.sot as i64; cross.batch];
        let out =
            self.sessions
                .decode(&tokens, &KvCache::empty(cross.batch), cross.view(), false)?;
        Ok(out.logits().chunks(c.n_vocab).map(|r| r.to_vec()).collect())
    }

    /// The language when it needs no detection: English-only models, or a code in
    /// `options.language` (not `auto`).
    fn given_language(&self, options: &DecodeOptions) -> Result<Option<Language>> {
        let c = self.config();
        if !c.multilingual {
            return Ok(Some((None, "en".to_string(), 1.0)));
        }
        let Some(code) = options.language.as_deref().filter(|l| *l != "auto") else {
            return Ok(None);
        };
        let token = c.language_token(code).ok_or_else(|| {
            ModelError::InvalidConfig(format!(
                "language `{code}` is not one of this model's languages ({})",
                c.languages.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        Ok(Some((Some(token), code.to_string(), 1.0)))
    }

    /// The most likely language at `<|startoftranscript|>` (softmax over the language
    /// tokens only).
    fn detect_language(&self, logits: &[f32]) -> Result<Language> {
        let c = self.config();
        let max = c
            .languages
            .values()
            .map(|&t| logits[t as usize] as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = c
            .languages
            .values()
            .map(|&t| (logits[t as usize] as f64 - max).exp())
            .sum();
        let (code, token) = c
            .languages
            .iter()
            .max_by(|a, b| logits[*a.1 as usize].total_cmp(&logits[*b.1 as usize]))
            .ok_or_else(|| {
                ModelError::InvalidConfig("multilingual model without languages".into())
            })?;
        let prob = (logits[*token as usize] as f64 - max).exp() / total;
        Ok((Some(*token), code.clone(), prob))
    }

    /// The probability of `<|nospeech|>` from the logits at `<|startoftranscript|>`.
    fn no_speech_prob(&self, logits: &[f32]) -> f64 {
        softmax_prob(logits, self.config().tokens.no_speech as usize)
    }

    /// `<|startoftranscript|>` [language, `<|transcribe|>`] `<|notimestamps|>`.
    fn prompt(&self, language: Option<u32>) -> Vec<u32> {
        let t = &self.config().tokens;
        let mut p = vec![t.sot];
        if let Some(lang) = language {
            p.push(lang);
            p.push(t.transcribe);
        }
        p.push(t.no_timestamps);
        p
    }

    fn max_new_tokens(&self, prompt_len: usize) -> usize {
        let ctx = self.config().n_text_ctx;
        (ctx / 2).min(ctx.saturating_sub(prompt_len))
    }

    /// Sets suppressed tokens of one row's logits to −∞ (and the begin set on the
    /// first generated token).
    fn suppress(&self, logits: &mut [f32], first: bool) {
        let c = self.config();
        let t = &c.tokens;
        for &s in &c.suppress_ids {
            if let Some(v) = logits.get_mut(s as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
        for s in [
            t.transcribe,
            t.translate,
            t.sot,
            t.sot_prev,
            t.sot_lm,
            t.no_speech,
            t.no_timestamps,
        ] {
            if let Some(v) = logits.get_mut(s as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
        // No timestamps are generated in no-timestamps mode.
        for v in logits.iter_mut().skip(t.timestamp_begin as usize) {
            *v = f32::NEG_INFINITY;
        }
        if first {
            for &s in &c.suppress_ids_begin {
                if let Some(v) = logits.get_mut(s as usize) {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// Beam search (beam 1 = greedy) over a batch of windows, as openai-whisper's
    /// `BeamSearchDecoder` with `patience`; returns the best hypothesis of each window
    /// ranked by log-probability per token, and each window's no-speech probability at
    /// `<|startoftranscript|>`. Windows that have their finished hypotheses leave the
    /// batch once they are half of it: each step then costs the windows still
    /// decoding, while the cross-attention tensors are copied only a few times.
    fn beam_search(
        &self,
        cross: CrossView<'_>,
        prompts: &[Vec<u32>],
        beam: usize,
        patience: f64,
    ) -> Result<(Vec<Hypothesis>, Vec<f64>)> {
        let c = self.config();
        let eot = c.tokens.eot;
        let n = cross.batch;
        let max_candidates = ((beam as f64 * patience).round() as usize).max(1);
        let prompt_len = prompts[0].len();
        if prompts.iter().any(|p| p.len() != prompt_len) {
            return Err(ModelError::InvalidInput(
                "prompts of one batch differ in length".into(),
            ));
        }
        let max_new = self.max_new_tokens(prompt_len);
        // The windows in the batch, in row order: slot s holds window slots[s], whose
        // beams are rows s*beam .. (s+1)*beam of the cache, `live` and each call.
        // `subset` holds their cross-attention tensors once some have left.
        let mut slots: Vec<usize> = (0..n).collect();
        let mut subset: Option<CrossKv> = None;
        let mut done = vec![false; n];
        let mut live: Vec<Hypothesis> = (0..n * beam)
            .map(|_| Hypothesis {
                tokens: Vec::new(),
                sum_logprob: 0.0,
            })
            .collect();
        let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); n];
        let mut cache = KvCache::empty(n * beam);
        let mut input: Vec<i64> = (0..n)
            .flat_map(|w| std::iter::repeat_n(w, beam))
            .flat_map(|w| prompts[w].iter().map(|&t| t as i64))
            .collect();
        let mut no_speech = Vec::with_capacity(n);
        for step in 0..max_new {
            let sub = subset.as_ref().map_or(cross, CrossKv::view);
            let mut out = self.sessions.decode(&input, &cache, sub, false)?;
            let t = input.len() / (slots.len() * beam);
            let v = c.n_vocab;
            if step == 0 {
                // Position 0 of each window's first row is <|startoftranscript|>.
                no_speech.extend((0..n).map(|w| {
                    let at = w * beam * t * v;
                    self.no_speech_prob(&out.logits()[at..at + v])
                }));
            }
            // Each decoding window's next beams: (hypothesis, token, source row).
            let mut next: Vec<Vec<(Hypothesis, u32, usize)>> = vec![Vec::new(); slots.len()];
            for (slot, &w) in slots.iter().enumerate() {
                if done[w] {
                    continue;
                }
                // Candidates from each live beam of this window (only the first at step 0:
                // the beams start identical).
                let mut candidates: Vec<(f64, usize, u32)> = Vec::new();
                let beams = if step == 0 { 1 } else { beam };
                for b in 0..beams {
                    let r = slot * beam + b;
                    let at = (r * t + t - 1) * v;
                    let logits = &mut out.logits_mut()[at..at + v];
                    self.suppress(logits, step == 0);
                    let lse = log_sum_exp(logits);
                    for (tok, logit) in top_k(logits, beam + 1) {
                        candidates.push((live[r].sum_logprob + logit as f64 - lse, r, tok));
                    }
                }
                candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
                let beams = &mut next[slot];
                for (score, r, tok) in candidates {
                    if tok == eot {
                        if finished[w].len() < max_candidates {
                            finished[w].push(Hypothesis {
                                tokens: live[r].tokens.clone(),
                                sum_logprob: score,
                            });
                        }
                        continue;
                    }
                    let mut tokens = live[r].tokens.clone();
                    tokens.push(tok);
                    let hyp = Hypothesis {
                        tokens,
                        sum_logprob: score,
                    };
                    beams.push((hyp, tok, r));
                    if beams.len() == beam {
                        break;
                    }
                }
                done[w] = finished[w].len() >= max_candidates;
            }
            let decoding = slots.iter().filter(|&&w| !done[w]).count();
            if decoding == 0 {
                slots.clear();
                break;
            }
            let keep: Vec<usize> = if decoding * 2 <= slots.len() {
                (0..slots.len()).filter(|&s| !done[slots[s]]).collect()
            } else {
                (0..slots.len()).collect()
            };
            let mut next_tokens = Vec::with_capacity(keep.len() * beam);
            let mut sources = Vec::with_capacity(keep.len() * beam);
            let mut next_live = Vec::with_capacity(keep.len() * beam);
            for &slot in &keep {
                let mut beams = std::mem::take(&mut next[slot]);
                // `beam` rows per window, also for a finished one still in the batch
                // or one that ran out of candidates (their outputs are not read).
                while beams.len() < beam {
                    let r = slot * beam;
                    beams.push((live[r].clone(), eot, r));
                }
                for (hyp, tok, r) in beams {
                    next_live.push(hyp);
                    next_tokens.push(tok as i64);
                    sources.push(r);
                }
            }
            if keep.len() < slots.len() {
                slots = keep.iter().map(|&s| slots[s]).collect();
                subset = Some(self.sessions.select_cross(cross, &slots));
            }
            cache = self.sessions.select_cache(out.cache, &sources)?;
            live = next_live;
            input = next_tokens;
        }
        // Windows without enough finished hypotheses take their live ones.
        for (slot, &w) in slots.iter().enumerate() {
            if !done[w] {
                finished[w].extend(live[slot * beam..(slot + 1) * beam].iter().cloned());
            }
        }
        let best = finished
            .into_iter()
            .map(|pool| {
                pool.into_iter()
                    .max_by(|a, b| {
                        let sa = a.sum_logprob / a.tokens.len().max(1) as f64;
                        let sb = b.sum_logprob / b.tokens.len().max(1) as f64;
                        sa.total_cmp(&sb)
                    })
                    .unwrap_or(Hypothesis {
                        tokens: Vec::new(),
                        sum_logprob: 0.0,
                    })
            })
            .collect();
        Ok((best, no_speech))
    }

    /// Samples `best_of` continuations per window at `temperature` and keeps each
    /// window's best by log-probability per token; also returns each window's
    /// no-speech probability at `<|startoftranscript|>`.
    fn sample(
        &self,
        cross: CrossView<'_>,
        prompts: &[Vec<u32>],
        best_of: usize,
        temperature: f64,
        rng: &mut StdRng,
    ) -> Result<(Vec<Hypothesis>, Vec<f64>)> {
        let c = self.config();
        let eot = c.tokens.eot;
        let n = cross.batch;
        let rows: Vec<usize> = (0..n)
            .flat_map(|i| std::iter::repeat_n(i, best_of))
            .collect();
        let max_new = self.max_new_tokens(prompts[0].len());
        let mut hyps: Vec<Hypothesis> = (0..rows.len())
            .map(|_| Hypothesis {
                tokens: Vec::new(),
                sum_logprob: 0.0,
            })
            .collect();
        let mut finished = vec![false; rows.len()];
        let mut cache = KvCache::empty(rows.len());
        let mut input: Vec<i64> = rows
            .iter()
            .flat_map(|&i| prompts[i].iter().map(|&t| t as i64))
            .collect();
        let mut no_speech = Vec::with_capacity(n);
        for step in 0..max_new {
            let out = self.sessions.decode(&input, &cache, cross, false)?;
            let t = input.len() / rows.len();
            let v = c.n_vocab;
            if step == 0 {
                no_speech.extend((0..n).map(|w| {
                    let at = w * best_of * t * v;
                    self.no_speech_prob(&out.logits()[at..at + v])
                }));
            }
            let mut next = Vec::with_capacity(rows.len());
            for (r, hyp) in hyps.iter_mut().enumerate() {
                if finished[r] {
                    next.push(eot as i64);
                    continue;
                }
                let at = (r * t + t - 1) * v;
                let mut logits = out.logits()[at..at + v].to_vec();
                self.suppress(&mut logits, step == 0);
                let logprobs = log_softmax(&logits);
                let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 / temperature).collect();
                let tok = sample_softmax(&scaled, rng);
                hyp.sum_logprob += logprobs[tok as usize];
                if tok == eot {
                    finished[r] = true;
                } else {
                    hyp.tokens.push(tok);
                }
                next.push(tok as i64);
            }
            if finished.iter().all(|&f| f) {
                break;
            }
            cache = out.cache;
            input = next;
        }
        let best = (0..n)
            .map(|w| {
                hyps[w * best_of..(w + 1) * best_of]
                    .iter()
                    .max_by(|a, b| {
                        let sa = a.sum_logprob / a.tokens.len().max(1) as f64;
                        let sb = b.sum_logprob / b.tokens.len().max(1) as f64;
                        sa.total_cmp(&sb)
                    })
                    .cloned()
                    .unwrap_or(Hypothesis {
                        tokens: Vec::new(),
                        sum_logprob: 0.0,
                    })
            })
            .collect();
        Ok((best, no_speech))
    }

    fn attempt(&self, hyp: Hypothesis, temperature: f64) -> Attempt {
        let text = self.tokenizer.decode(&hyp.tokens).trim().to_string();
        Attempt {
            avg_logprob: hyp.sum_logprob / (hyp.tokens.len() + 1) as f64,
            compression_ratio: compression_ratio(&text),
            text,
            tokens: hyp.tokens,
            temperature,
        }
    }

    /// Word timings from a teacher-forced pass over the prompt, the text and
    /// `<|endoftext|>` (faster-whisper's `word_timestamps`, times to 10 ms).
    fn word_timestamps(
        &self,
        cross: CrossView<'_>,
        prompt: &[u32],
        text_tokens: &[u32],
        content_frames: usize,
        language: &str,
    ) -> Result<Vec<Word>> {
        let forced = timed(&self.profile().align_ns, || {
            self.teacher_forced(cross, prompt, text_tokens, content_frames, language)
        })?;
        Ok(forced
            .words
            .into_iter()
            .map(|(w, _)| Word {
                word: w.word,
                start: round2(w.start),
                end: round2(w.end),
                probability: w.probability,
            })
            .collect())
    }

    /// One teacher-forced decoder pass over the prompt, `text_tokens` and
    /// `<|endoftext|>`: each text token's log-probability where it was predicted, and
    /// the words (punctuation merged) with their times from DTW over the alignment
    /// heads and the range of their tokens.
    fn teacher_forced(
        &self,
        cross: CrossView<'_>,
        prompt: &[u32],
        text_tokens: &[u32],
        content_frames: usize,
        language: &str,
    ) -> Result<Forced> {
        let c = self.config();
        let mut tokens: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
        tokens.extend(text_tokens.iter().map(|&t| t as i64));
        tokens.push(c.tokens.eot as i64);
        let rows = tokens.len();
        let (v, eot) = (c.n_vocab, c.tokens.eot as usize);
        let heads = c.alignment_heads.len().max(1);
        let first_text_row = prompt.len() - 1;
        // Row r's logits predict token r + 1: text token i at row first_text_row + i.
        let mut token_probs = Vec::with_capacity(text_tokens.len());
        let mut token_logprobs = Vec::with_capacity(text_tokens.len());
        // Per chunk of tokens, the alignment heads' attention `[heads, chunk, S]`.
        let mut parts: Vec<(usize, Vec<f32>)> = Vec::new();
        let mut cache = KvCache::empty(1);
        let mut start = 0;
        while start < rows {
            let end = (start + self.forced_chunk_tokens).min(rows);
            let out = self
                .sessions
                .decode(&tokens[start..end], &cache, cross, true)?;
            let logits = out.logits();
            for r in start.max(first_text_row)..end {
                let Some(&t) = text_tokens.get(r - first_text_row) else {
                    break;
                };
                let at = (r - start) * v;
                // faster-whisper's word probabilities are over the text vocabulary; the
                // alignment score is over everything the model could have said.
                token_probs.push(softmax_prob(&logits[at..at + eot], t as usize));
                let row = &logits[at..at + v];
                token_logprobs.push(row[t as usize] as f64 - log_sum_exp(row));
            }
            parts.push((end - start, out.alignment));
            cache = out.cache;
            start = end;
        }
        let frames_total = parts
            .first()
            .map_or(0, |(n, a)| a.len() / (heads * n).max(1));
        // The chunks joined along the token axis: `[heads, rows, S]`.
        let mut alignment = Vec::with_capacity(heads * rows * frames_total);
        for h in 0..heads {
            for (n, part) in &parts {
                let per_head = n * frames_total;
                alignment.extend_from_slice(&part[h * per_head..(h + 1) * per_head]);
            }
        }
        let sot_sequence_len = prompt.len() - 1; // without <|notimestamps|>
        let path = align::token_frame_path(
            &alignment,
            heads,
            rows,
            frames_total,
            content_frames,
            sot_sequence_len,
        );
        let words = self.tokenizer.split_to_word_tokens(text_tokens, language);
        let counts: Vec<usize> = words.iter().map(|(_, t)| t.len()).collect();
        let times = align::word_times(&path, &counts);
        let mut timed = Vec::with_capacity(words.len());
        let mut at = 0usize;
        for ((word, toks), (start, end)) in words.into_iter().zip(times) {
            let probs = &token_probs[at..at + toks.len()];
            at += toks.len();
            timed.push(TimedWord {
                word,
                start,
                end,
                probability: probs.iter().sum::<f64>() / probs.len().max(1) as f64,
                tokens: toks.len(),
            });
        }
        text::merge_punctuations(&mut timed);
        // Merging keeps the tokens in order and contiguous: the ranges follow.
        let mut at = 0usize;
        let words = timed
            .into_iter()
            .map(|w| {
                let range = at..at + w.tokens;
                at = range.end;
                (w, range)
            })
            .collect();
        Ok(Forced {
            words,
            token_logprobs,
        })
    }

    /// Places given texts in time on their audio: Whisper is fed each text after the
    /// prompt of its language (teacher forcing) instead of choosing tokens, and the
    /// words are timed by DTW over the alignment heads, as for word timestamps. The
    /// score of a word is the mean log-probability of its tokens, that of a text the
    /// mean over all its tokens. Segments are encoded `batch_size` at a time.
    ///
    /// Per segment: the alignment, or why it cannot be aligned (`reason: detail`):
    /// `no_text`, `no_model_for_language`, `too_long_for_whisper` (audio over 30 s),
    /// `text_too_long` (more tokens than the decoder's context or than the audio has
    /// encoder frames). A failing model call is the error.
    pub fn align_texts(
        &self,
        segments: &[&[f32]],
        texts: &[&str],
        languages: &[&str],
        batch_size: usize,
    ) -> Result<Vec<std::result::Result<TextAlignment, String>>> {
        let n = segments.len();
        if texts.len() != n || languages.len() != n {
            return Err(ModelError::InvalidInput(format!(
                "align_texts: {n} segments, {} texts, {} languages",
                texts.len(),
                languages.len()
            )));
        }
        let mut out: Vec<Option<std::result::Result<TextAlignment, String>>> = vec![None; n];
        let mut ready: Vec<(usize, Vec<u32>, Vec<u32>)> = Vec::new();
        for i in 0..n {
            match self.prepare_forced(segments[i], texts[i], languages[i]) {
                Ok((prompt, tokens)) => ready.push((i, prompt, tokens)),
                Err(reason) => out[i] = Some(Err(reason)),
            }
        }
        for batch in ready.chunks(batch_size.max(1)) {
            let audio: Vec<&[f32]> = batch.iter().map(|(i, _, _)| segments[*i]).collect();
            let encoded = self.encode_batch(&audio)?;
            for (row, (i, prompt, tokens)) in batch.iter().enumerate() {
                let frames = encoded.content_frames[row];
                // DTW gives a token at least one encoder frame (20 ms, two mel frames).
                if tokens.len() > frames / 2 {
                    out[*i] = Some(Err(format!(
                        "text_too_long: {} tokens for {:.2} s of audio",
                        tokens.len(),
                        frames as f64 * HOP as f64 / SAMPLE_RATE as f64
                    )));
                    continue;
                }
                let one = encoded.cross.window(row);
                let forced = self.teacher_forced(one, prompt, tokens, frames, languages[*i])?;
                let logprobs = &forced.token_logprobs;
                let mean = |r: std::ops::Range<usize>| {
                    let s = &logprobs[r];
                    s.iter().sum::<f64>() / s.len().max(1) as f64
                };
                out[*i] = Some(Ok(TextAlignment {
                    avg_logprob: mean(0..logprobs.len()),
                    tokens: tokens.len(),
                    words: forced
                        .words
                        .into_iter()
                        .map(|(w, range)| AlignedWord {
                            word: w.word.trim().to_string(),
                            start: w.start,
                            end: w.end,
                            logprob: mean(range),
                        })
                        .collect(),
                }));
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err("align_failed: not aligned".into())))
            .collect())
    }

    /// The prompt and text tokens of one text to align, or why it cannot be.
    fn prepare_forced(
        &self,
        samples: &[f32],
        text: &str,
        language: &str,
    ) -> std::result::Result<(Vec<u32>, Vec<u32>), String> {
        let c = self.config();
        if samples.len() > WINDOW_SAMPLES {
            return Err(format!(
                "too_long_for_whisper: {:.1} s of audio; Whisper aligns at most 30 s",
                samples.len() as f64 / SAMPLE_RATE as f64
            ));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err("no_text: the text is empty".into());
        }
        let language_token = if c.multilingual {
            Some(c.language_token(language).ok_or_else(|| {
                format!(
                    "no_model_for_language: {} does not know language `{language}`",
                    self.id
                )
            })?)
        } else if language == "en" {
            None
        } else {
            return Err(format!(
                "no_model_for_language: {} is English-only (language `{language}`)",
                self.id
            ));
        };
        let prompt = self.prompt(language_token);
        let tokens = self
            .tokenizer
            .encode(&format!(" {text}"))
            .map_err(|e| format!("align_failed: {e}"))?;
        if prompt.len() + tokens.len() + 1 > c.n_text_ctx {
            return Err(format!(
                "text_too_long: {} tokens; the decoder's context holds {}",
                tokens.len(),
                c.n_text_ctx - prompt.len() - 1
            ));
        }
        Ok((prompt, tokens))
    }
}

/// A teacher-forced pass: words with their token ranges, and per-token log-probabilities.
struct Forced {
    words: Vec<(TimedWord, std::ops::Range<usize>)>,
    token_logprobs: Vec<f64>,
}

/// A word of a given text placed in time, seconds from the start of the segment.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedWord {
    /// As the text writes it (Whisper's leading space removed; punctuation attached).
    pub word: String,
    pub start: f64,
    pub end: f64,
    /// Mean log-probability of the word's tokens.
    pub logprob: f64,
}

/// A given text placed in time on its segment by [`Whisper::align_texts`].
#[derive(Debug, Clone, PartialEq)]
pub struct TextAlignment {
    pub words: Vec<AlignedWord>,
    /// Mean log-probability per text token.
    pub avg_logprob: f64,
    /// Text tokens.
    pub tokens: usize,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_parse_by_name_and_int8_rows_differs_from_int8_only_in_its_encoder() {
        for (name, p) in [
            ("fp32", Precision::Fp32),
            ("float32", Precision::Fp32),
            ("int8", Precision::Int8),
            ("int8-rows", Precision::Int8Rows),
        ] {
            assert_eq!(name.parse::<Precision>().unwrap(), p);
        }
        let err = "int4".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("int8-rows"), "{err}");
        let (int8, rows) = (Precision::Int8.files(), Precision::Int8Rows.files());
        assert_ne!(int8[0], rows[0]);
        assert_eq!(int8[1..], rows[1..]);
        assert_eq!(
            model_id(Path::new("/m/whisper-base"), Precision::Int8Rows),
            "whisper-base:int8-rows"
        );
    }

    #[test]
    fn own_directory_missing_a_precisions_file_says_to_convert_again() {
        let dir = tempfile::tempdir().unwrap();
        for f in Precision::Int8.all_files() {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let name = dir.path().to_str().unwrap();
        assert!(Whisper::model_ref(name, Precision::Int8).is_ok());
        let err = Whisper::model_ref(name, Precision::Int8Rows)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("encoder_int8_rows.onnx not found")
                && err.contains("whisper_to_onnx.py CT2_DIR"),
            "{err}"
        );
    }
}
