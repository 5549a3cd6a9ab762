//! Text to speech for the `tts` stage, two backends:
//!
//! * [`PiperVoice`]: a Piper voice (VITS exported to ONNX, `<name>.onnx` with its
//!   `<name>.onnx.json` beside it), phonemized with espeak-ng the way piper does it:
//!   the text is cut into clauses at `, ; : . ! ?`, each clause's IPA keeps its
//!   punctuation (`, ; :` followed by a space), a sentence ends at `. ! ?`, and each
//!   sentence is one model run, `^ _ (id _)* $` (every phoneme id followed by the pad
//!   `_`). The sentences' audio is concatenated with a short silence between them.
//! * [`espeak_synthesize`]: espeak-ng's own formant synthesis, for any voice espeak-ng
//!   has (22,050 Hz).
//!
//! The espeak-ng program prints one line per clause and drops the punctuation, so the
//! clauses are matched to the text's punctuation by count (one espeak-ng call for the
//! whole text); where espeak-ng cut the text elsewhere (abbreviations such as `e.g.`,
//! dashes), each clause is phonemized on its own instead.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use crate::phoneme_ctc::{espeak_knows, run_espeak};
use crate::runtime::error::{io_error, one_line, ort_error};
use crate::runtime::{
    ModelError, ModelRef, Result, SessionConfig, create_session, registry, resolve_model,
    shared_model,
};

/// The registry's Piper voice.
pub const PIPER_VOICE: &str = "piper-en_US-joe-medium";
/// espeak-ng's output rate.
pub const ESPEAK_SAMPLE_RATE: u32 = 22_050;

/// Clause punctuation piper keeps; `.`, `!` and `?` also end a sentence.
const CLAUSE_END: [char; 6] = ['.', ',', ';', ':', '!', '?'];
/// Closing quotes and brackets that may follow clause punctuation.
const CLOSERS: [char; 8] = ['"', '\'', '”', '’', ')', ']', '}', '»'];

/// Synthesized audio, mono `f32` in [-1, 1], with its words' times where the backend
/// gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Every word of the text in order, from the voice's phoneme durations (Piper
    /// voices with a durations graph); `None` where there are none or espeak-ng's
    /// words could not be matched to the text's.
    pub words: Option<Vec<SpokenWord>>,
}

/// A word of synthesized speech and where it is in the audio, seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct SpokenWord {
    pub word: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// The graph beside a Piper voice `<stem>.onnx` that also outputs its phoneme
/// durations (`durations`, frames per input id): `models/tools/piper_durations.py`,
/// run by setup for the registry's voice, for any voice by hand.
pub fn durations_graph(onnx: &Path) -> PathBuf {
    onnx.with_extension("durations.onnx")
}

/// One sentence of model input: the ids, the word each id belongs to (`None`: the
/// markers, pauses between words and punctuation) and the sentence's words as written.
struct SentenceInput {
    ids: Vec<i64>,
    word_of: Vec<Option<usize>>,
    words: Vec<String>,
}

impl Speech {
    /// Seconds of audio.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// How a Piper voice speaks; [`PiperVoice::default_options`] gives the voice's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PiperOptions {
    /// Variation of the audio (0: deterministic, with `noise_w` 0).
    pub noise_scale: f32,
    /// Duration scale: above 1 slower, below 1 faster.
    pub length_scale: f32,
    /// Variation of phoneme durations.
    pub noise_w: f32,
    /// Speaker id of a multi-speaker voice (0 when unset); ignored by a single-speaker one.
    pub speaker: Option<i64>,
    /// Silence after each sentence but the last, seconds (piper's default: 0.2).
    pub sentence_silence_s: f32,
}

#[derive(Debug, Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    espeak: EspeakConfig,
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default = "one")]
    num_speakers: usize,
    #[serde(default)]
    speaker_id_map: HashMap<String, i64>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// A loaded Piper voice. Callers share it: each concurrent call takes an idle ONNX
/// session (another is created when all are busy, up to one per core's worth of
/// threads; beyond that calls wait for one to be free, as more would only share the
/// cores and hold more memory).
pub struct PiperVoice {
    path: PathBuf,
    /// The graph sessions load: the durations graph where there is one.
    session_path: PathBuf,
    durations: bool,
    config: SessionConfig,
    sessions: Mutex<Sessions>,
    freed: Condvar,
    max_sessions: usize,
    voice: VoiceConfig,
    ids: HashMap<char, Vec<i64>>,
    has_sid: bool,
}

impl std::fmt::Debug for PiperVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperVoice")
            .field("path", &self.path)
            .field("espeak_voice", &self.voice.espeak.voice)
            .finish_non_exhaustive()
    }
}

/// A voice's ONNX sessions: the idle ones and how many exist.
struct Sessions {
    idle: Vec<Session>,
    created: usize,
}

/// `<onnx>.json`, the voice's config beside it.
fn config_path(onnx: &Path) -> PathBuf {
    let mut name = onnx.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

impl PiperVoice {
    /// The voice at `location` (a registry name such as [`PIPER_VOICE`], a name under
    /// `<cache>/models/`, or a path to a `.onnx` file), hashed: what a plan carries.
    /// Its location is the voice's directory and its files are the `.onnx` and the
    /// `.onnx.json`, so the fingerprint covers both and both are verified.
    pub fn model_ref(location: &str) -> Result<ModelRef> {
        let onnx = resolve_model(location)?;
        let file = onnx
            .file_name()
            .and_then(|f| f.to_str())
            .filter(|f| f.ends_with(".onnx") && onnx.is_file())
            .ok_or_else(|| {
                ModelError::InvalidInput(format!(
                    "Piper voice {location}: {} is not a .onnx file",
                    onnx.display()
                ))
            })?
            .to_string();
        // A location naming the directory the way every process resolves it.
        let relative = |p: &str| {
            Path::new(p)
                .parent()
                .and_then(|d| d.to_str())
                .map(str::to_string)
        };
        let dir = if Path::new(location).exists() {
            relative(location).map(|d| if d.is_empty() { ".".into() } else { d })
        } else if let Some(a) = registry().artifact(location) {
            a.path.strip_prefix("models/").and_then(relative)
        } else {
            relative(location)
        }
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            ModelError::InvalidInput(format!(
                "Piper voice {location}: its directory has no location (want a registry voice under models/ or a path)"
            ))
        })?;
        let json = format!("{file}.json");
        let name = format!("piper:{}", file.trim_end_matches(".onnx"));
        ModelRef::hashed(name, &dir, &[&file, &json])
    }

    /// The process's voice for `model` (verified once per process), shared by all callers.
    pub fn shared(model: &ModelRef, config: &SessionConfig) -> Result<Arc<Self>> {
        let file = model
            .files
            .first()
            .map(|f| f.path.clone())
            .unwrap_or_default();
        shared_model(model, config, |dir, config| {
            Self::from_path(&dir.join(&file), config)
        })
    }

    /// Loads the voice `onnx` with its `<onnx>.json` and checks the model's inputs.
    pub fn from_path(onnx: &Path, config: &SessionConfig) -> Result<Self> {
        let json = config_path(onnx);
        if !json.exists() {
            return Err(ModelError::MissingFile { path: json });
        }
        let text = std::fs::read_to_string(&json).map_err(io_error(&json))?;
        let voice: VoiceConfig =
            serde_json::from_str(&text).map_err(|e| ModelError::ModelLoad {
                path: json.clone(),
                message: format!("not a Piper voice config: {}", one_line(e)),
            })?;
        let ids = voice
            .phoneme_id_map
            .iter()
            .filter_map(|(symbol, ids)| {
                let mut chars = symbol.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some((c, ids.clone())),
                    _ => None,
                }
            })
            .collect::<HashMap<_, _>>();
        for needed in ['^', '_', '$'] {
            if !ids.contains_key(&needed) {
                return Err(ModelError::ModelLoad {
                    path: json.clone(),
                    message: format!("phoneme_id_map has no `{needed}`"),
                });
            }
        }
        let with_durations = durations_graph(onnx);
        let session_path = if with_durations.is_file() {
            with_durations
        } else {
            onnx.to_path_buf()
        };
        let session = create_session(&session_path, config)?;
        let durations = session.outputs().iter().any(|o| o.name() == "durations");
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let has_sid = inputs.contains(&"sid");
        if !["input", "input_lengths", "scales"]
            .iter()
            .all(|n| inputs.contains(n))
            || session.outputs().is_empty()
        {
            return Err(ModelError::ModelLoad {
                path: onnx.to_path_buf(),
                message: format!(
                    "not a Piper voice (inputs {inputs:?}; want input, input_lengths, scales[, sid] -> audio)"
                ),
            });
        }
        Ok(PiperVoice {
            path: onnx.to_path_buf(),
            session_path,
            durations,
            config: config.clone(),
            sessions: Mutex::new(Sessions {
                idle: vec![session],
                created: 1,
            }),
            freed: Condvar::new(),
            max_sessions: config.sessions_per_cores(),
            voice,
            ids,
            has_sid,
        })
    }

    /// An idle session, a new one while there are fewer than `max_sessions`, or the
    /// next one another caller gives back.
    fn take_session(&self) -> Result<Session> {
        let mut slots = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(s) = slots.idle.pop() {
                return Ok(s);
            }
            if slots.created < self.max_sessions {
                slots.created += 1;
                drop(slots);
                return create_session(&self.session_path, &self.config).inspect_err(|_| {
                    self.sessions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .created -= 1;
                    self.freed.notify_one();
                });
            }
            slots = self.freed.wait(slots).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, session: Session) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .idle
            .push(session);
        self.freed.notify_one();
    }

    /// The espeak-ng voice the phonemes come from (`en-us`).
    pub fn espeak_voice(&self) -> &str {
        &self.voice.espeak.voice
    }

    /// The rate of the audio the voice makes.
    pub fn sample_rate(&self) -> u32 {
        self.voice.audio.sample_rate
    }

    /// Speakers of the voice (1 for a single-speaker voice).
    pub fn speakers(&self) -> usize {
        self.voice.num_speakers.max(1)
    }

    /// The id of the speaker called `name` in a multi-speaker voice.
    pub fn speaker_id(&self, name: &str) -> Option<i64> {
        self.voice.speaker_id_map.get(name).copied()
    }

    /// The voice's own settings (its `inference` section), speaker 0, piper's 0.2 s
    /// between sentences.
    pub fn default_options(&self) -> PiperOptions {
        let i = &self.voice.inference;
        PiperOptions {
            noise_scale: i.noise_scale,
            length_scale: i.length_scale,
            noise_w: i.noise_w,
            speaker: None,
            sentence_silence_s: 0.2,
        }
    }

    /// The model's input for each sentence of `text`; symbols the voice lacks are
    /// left out. Empty when there is nothing to say.
    pub fn phoneme_ids(&self, text: &str) -> std::result::Result<Vec<Vec<i64>>, String> {
        Ok(self
            .sentence_inputs(text)?
            .into_iter()
            .map(|s| s.ids)
            .collect())
    }

    fn sentence_inputs(&self, text: &str) -> std::result::Result<Vec<SentenceInput>, String> {
        let id = |c: char| self.ids.get(&c).map(Vec::as_slice).unwrap_or_default();
        Ok(piper_phonemes(text, self.espeak_voice())?
            .into_iter()
            .map(|(sentence, words)| {
                let mut ids = Vec::with_capacity(2 * sentence.chars().count() + 3);
                let mut word_of = Vec::with_capacity(ids.capacity());
                let mut push = |symbol: &[i64], word: Option<usize>| {
                    ids.extend_from_slice(symbol);
                    word_of.extend(std::iter::repeat_n(word, symbol.len()));
                };
                push(id('^'), None);
                push(id('_'), None);
                // Words are what lies between spaces; punctuation belongs to none.
                let (mut word, mut in_word) = (0usize, false);
                for c in sentence.nfd() {
                    let part = if c.is_whitespace() {
                        if in_word {
                            word += 1;
                            in_word = false;
                        }
                        None
                    } else if CLAUSE_END.contains(&c) || c.is_ascii_punctuation() {
                        None
                    } else {
                        in_word = true;
                        Some(word)
                    };
                    let symbol = id(c);
                    if !symbol.is_empty() {
                        push(symbol, part);
                        push(id('_'), part);
                    }
                }
                push(id('$'), None);
                SentenceInput {
                    ids,
                    word_of,
                    words,
                }
            })
            .collect())
    }

    /// Speaks `text`: one model run per sentence, concatenated; with word times when
    /// the voice has a durations graph.
    pub fn synthesize(&self, text: &str, options: &PiperOptions) -> Result<Speech> {
        let sentences = self
            .sentence_inputs(text)
            .map_err(|e| ModelError::InvalidInput(one_line(e)))?;
        let speaker = options.speaker.unwrap_or(0);
        if self.has_sid && !(0..self.speakers() as i64).contains(&speaker) {
            return Err(ModelError::InvalidInput(format!(
                "speaker {speaker} of Piper voice {}: it has {} speakers",
                self.path.display(),
                self.speakers()
            )));
        }
        let rate = f64::from(self.sample_rate());
        let silence = (options.sentence_silence_s.max(0.0) * self.sample_rate() as f32) as usize;
        let mut samples = Vec::new();
        let mut words = self.durations.then(Vec::new);
        for (i, sentence) in sentences.iter().enumerate() {
            if i > 0 {
                samples.resize(samples.len() + silence, 0.0);
            }
            let offset = samples.len();
            let durations = self.run(&sentence.ids, options, speaker, &mut samples)?;
            let timed = durations.and_then(|d| {
                word_times(sentence, &d, samples.len() - offset).map(|w| {
                    w.into_iter().map(|(word, a, b)| SpokenWord {
                        word,
                        start_s: (offset as f64 + a) / rate,
                        end_s: (offset as f64 + b) / rate,
                    })
                })
            });
            words = match (words, timed) {
                (Some(mut all), Some(timed)) => {
                    all.extend(timed);
                    Some(all)
                }
                _ => None,
            };
        }
        Ok(Speech {
            samples,
            sample_rate: self.sample_rate(),
            words,
        })
    }

    /// One model run; appends its audio to `out`; the frames per id where the graph
    /// gives them.
    fn run(
        &self,
        ids: &[i64],
        o: &PiperOptions,
        speaker: i64,
        out: &mut Vec<f32>,
    ) -> Result<Option<Vec<f32>>> {
        let ctx = || format!("Piper voice {}", self.path.display());
        let mut session = self.take_session()?;
        let result = (|| {
            let lengths = [ids.len() as i64];
            let scales = [o.noise_scale, o.length_scale, o.noise_w];
            let sid = [speaker];
            let tensor = |e| ort_error(ctx())(e);
            let mut inputs = ort::inputs![
                "input" => TensorRef::from_array_view(([1, ids.len()], ids)).map_err(tensor)?,
                "input_lengths" => TensorRef::from_array_view(([1], &lengths[..])).map_err(tensor)?,
                "scales" => TensorRef::from_array_view(([3], &scales[..])).map_err(tensor)?,
            ];
            if self.has_sid {
                let sid = TensorRef::from_array_view(([1], &sid[..])).map_err(tensor)?;
                inputs.push(("sid".into(), sid.into()));
            }
            let outputs = session.run(inputs).map_err(ort_error(ctx()))?;
            let (_, audio) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(ort_error(ctx()))?;
            out.extend(audio.iter().map(|s| s.clamp(-1.0, 1.0)));
            let durations = match outputs.get("durations") {
                Some(d) => {
                    let (_, d) = d.try_extract_tensor::<f32>().map_err(ort_error(ctx()))?;
                    (d.len() == ids.len()).then(|| d.to_vec())
                }
                None => None,
            };
            Ok(durations)
        })();
        self.give_back(session);
        result
    }
}

/// Each word of `sentence` with its first and last sample in the sentence's audio
/// (`samples` long), from the frames per id; `None` when espeak-ng's words are not
/// the text's one for one (it reads some tokens as several words or none).
fn word_times(
    sentence: &SentenceInput,
    frames: &[f32],
    samples: usize,
) -> Option<Vec<(String, f64, f64)>> {
    let total: f64 = frames.iter().map(|&f| f64::from(f)).sum();
    let spoken = sentence.word_of.iter().flatten().max().map_or(0, |w| w + 1);
    if total <= 0.0 || spoken != sentence.words.len() {
        return None;
    }
    // Samples per frame: the decoder's hop (256 for Piper's voices).
    let hop = samples as f64 / total;
    let mut at = 0.0;
    let mut spans: Vec<Option<(f64, f64)>> = vec![None; spoken];
    for (&word, &f) in sentence.word_of.iter().zip(frames) {
        let next = at + f64::from(f) * hop;
        if let Some(w) = word {
            let span = spans[w].get_or_insert((at, next));
            span.1 = next;
        }
        at = next;
    }
    sentence
        .words
        .iter()
        .zip(spans)
        .map(|(word, span)| span.map(|(a, b)| (word.clone(), a, b)))
        .collect()
}

/// A clause of the text and the punctuation that ends it.
#[derive(Debug, PartialEq)]
struct Clause<'a> {
    text: &'a str,
    punct: Option<char>,
}

/// Cuts `text` after clause punctuation followed by whitespace (or the end), with any
/// closing quotes or brackets; `3.5` and `1,000` stay whole. Clauses with nothing to
/// say (no letter or digit) are left out.
fn clauses(text: &str) -> Vec<Clause<'_>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |j: usize| chars.get(j).map_or(text.len(), |&(b, _)| b);
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < chars.len() {
        let c = chars[i].1;
        if !CLAUSE_END.contains(&c) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && CLAUSE_END.contains(&chars[j].1) {
            j += 1;
        }
        while j < chars.len() && CLOSERS.contains(&chars[j].1) {
            j += 1;
        }
        if j == chars.len() || chars[j].1.is_whitespace() {
            let end = at(j);
            out.push(Clause {
                text: &text[start..end],
                punct: Some(c),
            });
            start = end;
        }
        i = j;
    }
    out.push(Clause {
        text: &text[start..],
        punct: None,
    });
    out.retain(|c| c.text.chars().any(char::is_alphanumeric));
    out
}

/// The IPA of each sentence of `text` as piper feeds it to a voice: clauses with their
/// punctuation, `, ; :` followed by a space, a sentence ending at `. ! ?`.
/// Each sentence with its words as written.
fn piper_phonemes(
    text: &str,
    voice: &str,
) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    let clauses = clauses(text);
    if clauses.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines = espeak_ipa(text, voice)?;
    if lines.len() != clauses.len() {
        // espeak-ng cut the text elsewhere: each clause alone.
        lines = clauses
            .iter()
            .map(|c| espeak_ipa(c.text, voice).map(|l| l.join(" ")))
            .collect::<std::result::Result<_, _>>()?;
    }
    let mut sentences = Vec::new();
    let (mut current, mut words) = (String::new(), Vec::new());
    for (clause, ipa) in clauses.iter().zip(lines) {
        if ipa.is_empty() {
            continue;
        }
        current.push_str(&ipa);
        // Words espeak-ng speaks: those with a letter or digit.
        words.extend(
            clause
                .text
                .split_whitespace()
                .filter(|w| w.chars().any(char::is_alphanumeric))
                .map(str::to_string),
        );
        match clause.punct {
            Some(p @ ('.' | '!' | '?')) => {
                current.push(p);
                sentences.push((std::mem::take(&mut current), std::mem::take(&mut words)));
            }
            Some(p) => {
                current.push(p);
                current.push(' ');
            }
            None => sentences.push((std::mem::take(&mut current), std::mem::take(&mut words))),
        }
    }
    if !current.is_empty() {
        sentences.push((current, words));
    }
    Ok(sentences)
}

/// espeak-ng's IPA of `text`, one line per clause, without separators.
fn espeak_ipa(text: &str, voice: &str) -> std::result::Result<Vec<String>, String> {
    let out = run_espeak(&["-q", "--ipa", "-v", voice], text, voice)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(|l| l.replace(['\u{200d}', '_'], "").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Whether espeak-ng has `voice` (asked once per process).
pub fn espeak_has_voice(voice: &str) -> bool {
    espeak_knows(voice)
}

/// Speaks `text` with espeak-ng's voice `voice` (`en-us`, `de`, `es`, …; see
/// [`espeak_voice`](crate::phoneme_ctc::espeak_voice) for a language code's voice):
/// mono 22,050 Hz.
pub fn espeak_synthesize(text: &str, voice: &str) -> std::result::Result<Speech, String> {
    if !espeak_has_voice(voice) {
        return Err(format!("espeak-ng has no voice `{voice}`"));
    }
    let mut wav = run_espeak(&["-v", voice, "--stdout"], text, voice)?;
    fix_stream_sizes(&mut wav);
    let bad = |e: hound::Error| format!("espeak-ng -v {voice}: unreadable WAV output: {e}");
    let reader = hound::WavReader::new(Cursor::new(wav)).map_err(bad)?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(format!(
            "espeak-ng -v {voice}: WAV of {} bits {:?}, want 16-bit PCM",
            spec.bits_per_sample, spec.sample_format
        ));
    }
    let channels = usize::from(spec.channels.max(1));
    let pcm = reader
        .into_samples::<i16>()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)?;
    let samples = pcm
        .chunks(channels)
        .map(|frame| frame.iter().map(|&s| f32::from(s) / 32768.0).sum::<f32>() / channels as f32)
        .collect();
    Ok(Speech {
        samples,
        sample_rate: spec.sample_rate,
        words: None,
    })
}

/// espeak-ng writes a WAV to a pipe with placeholder sizes (`0x7ffff000`): sets the
/// RIFF size and the `data` chunk's size to what is there.
fn fix_stream_sizes(wav: &mut [u8]) {
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return;
    }
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let riff = size(wav.len() - 8);
    wav[4..8].copy_from_slice(&riff);
    let mut at = 12;
    while at + 8 <= wav.len() {
        let len = u32::from_le_bytes([wav[at + 4], wav[at + 5], wav[at + 6], wav[at + 7]]) as usize;
        if &wav[at..at + 4] == b"data" {
            let data = size((wav.len() - at - 8) & !1);
            wav[at + 4..at + 8].copy_from_slice(&data);
            return;
        }
        at += 8 + len + (len & 1);
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// The registry's voice; a missing cache fails with the setup command.
    fn voice() -> Arc<PiperVoice> {
        let model = PiperVoice::model_ref(PIPER_VOICE).unwrap_or_else(|e| panic!("{e}"));
        PiperVoice::shared(&model, &SessionConfig::cpu(1)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    #[test]
    fn clauses_keep_their_punctuation_and_numbers_stay_whole() {
        let c = clauses("Hello, world. It cost 3.5 or 1,000! \"Fine,\" he said?! Done");
        let got: Vec<(&str, Option<char>)> = c.iter().map(|c| (c.text.trim(), c.punct)).collect();
        assert_eq!(
            got,
            [
                ("Hello,", Some(',')),
                ("world.", Some('.')),
                ("It cost 3.5 or 1,000!", Some('!')),
                ("\"Fine,\"", Some(',')),
                ("he said?!", Some('?')),
                ("Done", None),
            ]
        );
        assert!(clauses(" ... ").is_empty());
    }

    #[test]
    fn sentences_end_at_full_stops_and_clauses_keep_punctuation() {
        let s = piper_phonemes("Hello, world. How are you? Mr. Smith e.g. left", "en-us").unwrap();
        // espeak-ng cuts after `Mr.` but not after `e.g.`, so the clauses went to it one
        // by one, and `e.g.` ended a sentence as it does for piper's own clause cutter.
        assert_eq!(s.len(), 5, "{s:?}");
        assert_eq!(s[0].0, "həlˈoʊ, wˈɜːld.");
        assert_eq!(s[0].1, ["Hello,", "world."]);
        assert_eq!(s[1].0, "hˈaʊ ɑːɹ juː?");
        assert_eq!(s[2].0, "mˈɪstɚ.");
        assert_eq!(s[4].0, "lˈɛft");
        // Matched by count: one espeak-ng call for the whole text.
        let s = piper_phonemes("One: two; three, four. Five", "en-us").unwrap();
        let ipa: Vec<&str> = s.iter().map(|(ipa, _)| ipa.as_str()).collect();
        assert_eq!(ipa, ["wˈʌn: tˈuː; θɹˈiː, fˈoːɹ.", "fˈaɪv"]);
        assert_eq!(s[0].1, ["One:", "two;", "three,", "four."]);
    }

    #[test]
    fn phoneme_ids_are_bos_pad_interspersed_eos() {
        let v = voice();
        let ids = v.phoneme_ids("Hello world").unwrap();
        assert_eq!(ids.len(), 1);
        let ids = &ids[0];
        let (bos, pad, eos) = (v.ids[&'^'][0], v.ids[&'_'][0], v.ids[&'$'][0]);
        assert_eq!((ids[0], ids[1], *ids.last().unwrap()), (bos, pad, eos));
        assert!(ids[1..ids.len() - 1].iter().step_by(2).all(|&i| i == pad));
        // As the reference prototype builds them from `espeak-ng --ipa=3`.
        let ipa = Command::new("espeak-ng")
            .args(["-q", "--ipa=3", "-v", "en-us", "Hello world"])
            .output()
            .unwrap();
        let mut want = vec![bos, pad];
        for c in String::from_utf8(ipa.stdout).unwrap().trim().chars() {
            if let Some(i) = v.ids.get(&c).filter(|_| c != '\u{200d}' && c != '_') {
                want.extend([i[0], pad]);
            }
        }
        want.push(eos);
        assert_eq!(ids, &want);
        assert!(v.phoneme_ids("  ").unwrap().is_empty());
    }

    #[test]
    fn piper_speaks_deterministically_and_longer_text_is_longer() {
        let v = voice();
        assert_eq!(
            (v.sample_rate(), v.speakers(), v.espeak_voice()),
            (22_050, 1, "en-us")
        );
        let exact = PiperOptions {
            noise_scale: 0.0,
            noise_w: 0.0,
            ..v.default_options()
        };
        let a = v.synthesize("Hello world.", &exact).unwrap();
        assert_eq!(a.sample_rate, 22_050);
        assert!(
            (0.5..=3.0).contains(&a.duration_s()),
            "{} s",
            a.duration_s()
        );
        assert!(rms(&a.samples) > 0.01, "silent: rms {}", rms(&a.samples));
        let b = v.synthesize("Hello world.", &exact).unwrap();
        assert_eq!(a.samples, b.samples, "not deterministic");
        let long = v
            .synthesize(
                "Hello world. Speech data curation needs honest tests, every day.",
                &v.default_options(),
            )
            .unwrap();
        assert!(
            long.duration_s() > a.duration_s() + 1.0,
            "{} s",
            long.duration_s()
        );
    }

    #[test]
    fn the_derived_graph_speaks_as_the_voice_itself() {
        // Setup's durations graph also runs the 1-D convolutions as 2-D ones; the
        // voice's own graph alone (no durations graph beside it) must give the same audio.
        let v = voice();
        assert!(v.durations, "setup derives the durations graph");
        let dir =
            std::env::temp_dir().join(format!("speechmill-piper-plain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("voice.onnx");
        for (from, to) in [
            (v.path.clone(), plain.clone()),
            (config_path(&v.path), config_path(&plain)),
        ] {
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(&from, &to).unwrap();
        }
        let own = PiperVoice::from_path(&plain, &SessionConfig::cpu(1)).unwrap();
        assert!(!own.durations);
        let exact = PiperOptions {
            noise_scale: 0.0,
            noise_w: 0.0,
            ..v.default_options()
        };
        let text = "The designers polished the interface, and the engineers fixed the bugs.";
        let (a, b) = (
            v.synthesize(text, &exact).unwrap(),
            own.synthesize(text, &exact).unwrap(),
        );
        assert_eq!(a.samples.len(), b.samples.len());
        let worst = a
            .samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "largest difference {worst}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn espeak_speaks_german_and_spanish_and_names_an_unknown_voice() {
        for (voice, text) in [
            ("de", "Guten Morgen, wie geht es dir?"),
            ("es", "Buenos días, ¿cómo estás?"),
        ] {
            let s = espeak_synthesize(text, voice).unwrap();
            assert_eq!(s.sample_rate, ESPEAK_SAMPLE_RATE);
            assert!(
                s.duration_s() > 0.5 && rms(&s.samples) > 0.01,
                "{voice}: {} s",
                s.duration_s()
            );
        }
        assert!(espeak_has_voice("de") && !espeak_has_voice("xx-nope"));
        let e = espeak_synthesize("hallo", "xx-nope").unwrap_err();
        assert!(e.contains("xx-nope") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn the_model_ref_covers_the_onnx_and_its_config() {
        let r = PiperVoice::model_ref(PIPER_VOICE).unwrap_or_else(|e| panic!("{e}"));
        let files: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            files,
            ["en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"]
        );
        assert_eq!((r.location.as_str(), r.sha256().len()), ("piper", 128));
        assert!(r.verify().unwrap().ends_with("models/piper"));
        // A path to the .onnx gives the same files and hashes.
        let onnx = resolve_model(PIPER_VOICE).unwrap();
        let by_path = PiperVoice::model_ref(onnx.to_str().unwrap()).unwrap();
        assert_eq!((by_path.files, by_path.name), (r.files, r.name));
    }
}
