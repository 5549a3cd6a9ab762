//! A user's own CTC model for forced alignment: an ONNX export of a wav2vec2 / MMS /
//! phoneme-recognition model with its vocabulary, whose output symbols are characters
//! or IPA phonemes.
//!
//! Layout: a directory with `model.onnx` and `vocab.json` (`{"token": id, …}`, as
//! Hugging Face's `Wav2Vec2CTCTokenizer` writes it). The graph takes the 16 kHz
//! waveform as its first float input `[1, samples]` (optionally a lengths input
//! `[1]` or an `attention_mask` `[1, samples]`, both i64) and gives per-frame logits
//! or log-probabilities `[1, frames, vocabulary]` as its first output; log-softmax is
//! applied (a no-op on log-probabilities). The frame step is read off the output
//! (samples per frame, rounded to the millisecond) unless given.
//!
//! Text side ([`CtcUnits`]): characters — each word NFKC-normalised, cased as the
//! vocabulary is (lower case unless it has upper-case letters only), letters the
//! vocabulary lacks left out; phonemes — espeak-ng IPA mapped onto the vocabulary
//! like the built-in phoneme model's ([`crate::phoneme_ctc::Inventory`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, ValueType};
use unicode_normalization::UnicodeNormalization;

use crate::phoneme_ctc::{self, Inventory};
use crate::runtime::error::ort_error;
use crate::runtime::{ModelError, ModelRef, Result, SessionConfig, create_session};

pub const MODEL_FILE: &str = "model.onnx";
pub const VOCAB_FILE: &str = "vocab.json";
const SAMPLE_RATE: f64 = 16_000.0;

/// The model in directory `location`, hashed: what a plan carries.
pub fn model_ref(location: &str) -> Result<ModelRef> {
    let name = Path::new(location)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| location.to_string());
    ModelRef::hashed(format!("ctc:{name}"), location, &[MODEL_FILE, VOCAB_FILE])
}

/// What the model's symbols are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Units {
    Characters,
    Phonemes,
}

impl std::str::FromStr for Units {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "characters" => Ok(Units::Characters),
            "phonemes" => Ok(Units::Phonemes),
            other => Err(format!("unknown units `{other}` (characters, phonemes)")),
        }
    }
}

/// Turns words into a CTC model's targets.
#[derive(Clone, Debug)]
pub enum CtcUnits {
    /// The built-in phoneme model, or a user's phoneme model.
    Phonemes(Arc<Inventory>),
    Characters(Characters),
}

impl CtcUnits {
    /// From a vocabulary (symbol per id) and the names of its blank and word
    /// delimiter symbols.
    pub fn from_vocabulary(
        symbols: Vec<String>,
        units: Units,
        blank: &str,
        word_delimiter: Option<&str>,
    ) -> std::result::Result<Self, String> {
        let find = |name: &str| {
            symbols
                .iter()
                .position(|s| s == name)
                .map(|i| i as u32)
                .ok_or_else(|| format!("the vocabulary has no symbol `{name}`"))
        };
        let blank = find(blank)?;
        let word_delimiter = word_delimiter.map(find).transpose()?;
        Ok(match units {
            Units::Phonemes => {
                CtcUnits::Phonemes(Arc::new(Inventory::new(symbols, blank, word_delimiter)))
            }
            Units::Characters => {
                CtcUnits::Characters(Characters::new(symbols, blank, word_delimiter))
            }
        })
    }

    pub fn vocabulary(&self) -> usize {
        match self {
            CtcUnits::Phonemes(i) => i.len(),
            CtcUnits::Characters(c) => c.symbols,
        }
    }

    pub fn blank(&self) -> u32 {
        match self {
            CtcUnits::Phonemes(i) => i.blank,
            CtcUnits::Characters(c) => c.blank,
        }
    }

    /// The symbol between words, if the model has one.
    pub fn word_delimiter(&self) -> Option<u32> {
        match self {
            CtcUnits::Phonemes(i) => i.word_boundary,
            CtcUnits::Characters(c) => c.word_delimiter,
        }
    }

    /// Each word's targets (empty: nothing in it the model knows), or why the text
    /// cannot be read (`no_phonemizer: …`).
    pub fn words(
        &self,
        words: &[&str],
        language: &str,
    ) -> std::result::Result<Vec<Vec<u32>>, String> {
        match self {
            CtcUnits::Phonemes(inventory) => {
                let voice = phoneme_ctc::espeak_voice(language);
                if !phoneme_ctc::espeak_knows(&voice) {
                    return Err(format!(
                        "no_phonemizer: espeak-ng has no voice for language `{language}`"
                    ));
                }
                Ok(phoneme_ctc::phonemize(words, &voice)?
                    .iter()
                    .map(|ipa| inventory.tokens(ipa).0)
                    .collect())
            }
            CtcUnits::Characters(c) => Ok(words.iter().map(|w| c.tokens(w)).collect()),
        }
    }
}

/// A character vocabulary.
#[derive(Clone, Debug)]
pub struct Characters {
    index: HashMap<char, u32>,
    upper: bool,
    symbols: usize,
    blank: u32,
    word_delimiter: Option<u32>,
}

impl Characters {
    fn new(symbols: Vec<String>, blank: u32, word_delimiter: Option<u32>) -> Self {
        let mut index = HashMap::new();
        for (i, s) in symbols.iter().enumerate() {
            let mut chars = s.chars();
            if let (Some(c), None) = (chars.next(), chars.next())
                && i as u32 != blank
                && Some(i as u32) != word_delimiter
                && !c.is_whitespace()
            {
                index.insert(c, i as u32);
            }
        }
        let has_lower = index.keys().any(|c| c.is_lowercase());
        let has_upper = index.keys().any(|c| c.is_uppercase());
        Characters {
            index,
            upper: has_upper && !has_lower,
            symbols: symbols.len(),
            blank,
            word_delimiter,
        }
    }

    /// One word's characters as targets, cased as the vocabulary is; characters it
    /// lacks (punctuation, mostly) are left out.
    pub fn tokens(&self, word: &str) -> Vec<u32> {
        let normal: String = word.nfkc().collect();
        let cased = if self.upper {
            normal.to_uppercase()
        } else {
            normal.to_lowercase()
        };
        cased
            .chars()
            .filter_map(|c| self.index.get(&c).copied())
            .collect()
    }
}

/// How the graph takes its inputs.
#[derive(Debug)]
enum Extra {
    /// i64 `[1]`: the number of samples.
    Lengths(String),
    /// i64 `[1, samples]` of ones.
    AttentionMask(String),
}

/// A loaded user CTC model.
pub struct UserCtc {
    session: Mutex<Session>,
    path: PathBuf,
    waveform: String,
    extra: Vec<Extra>,
    output: String,
    /// Whether padded clips get their own emissions (probed at load).
    batches: bool,
    /// Symbol per id.
    pub symbols: Vec<String>,
}

impl std::fmt::Debug for UserCtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCtc")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Symbol per id of a `{"token": id}` vocabulary.
pub fn read_vocabulary(path: &Path) -> Result<Vec<String>> {
    let err = |message: String| ModelError::ModelLoad {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let map: HashMap<String, u32> = serde_json::from_str(&text)
        .map_err(|e| err(format!("want a {{\"token\": id}} object: {e}")))?;
    let mut symbols = vec![None; map.len()];
    for (token, id) in map {
        let slot = symbols.get_mut(id as usize).ok_or_else(|| {
            err(format!(
                "id {id} of `{token}` is not below the vocabulary's size"
            ))
        })?;
        if slot.is_some() {
            return Err(err(format!("id {id} is given twice")));
        }
        *slot = Some(token);
    }
    Ok(symbols.into_iter().map(Option::unwrap_or_default).collect())
}

impl UserCtc {
    /// Loads `<dir>/model.onnx` and `<dir>/vocab.json`.
    pub fn from_dir(dir: &Path, config: &SessionConfig) -> Result<Self> {
        let symbols = read_vocabulary(&dir.join(VOCAB_FILE))?;
        let path = dir.join(MODEL_FILE);
        let session = create_session(&path, config)?;
        let bad = |message: String| ModelError::ModelLoad {
            path: path.clone(),
            message,
        };
        let mut waveform = None;
        let mut extra = Vec::new();
        for input in session.inputs() {
            let element = match input.dtype() {
                ValueType::Tensor { ty, .. } => Some(*ty),
                _ => None,
            };
            let name = input.name().to_string();
            match element {
                Some(TensorElementType::Float32) if waveform.is_none() => waveform = Some(name),
                Some(TensorElementType::Int64) if name.contains("mask") => {
                    extra.push(Extra::AttentionMask(name))
                }
                Some(TensorElementType::Int64) => extra.push(Extra::Lengths(name)),
                _ => {
                    return Err(bad(format!(
                        "input `{name}` is neither the waveform (f32) nor a length or mask (i64)"
                    )));
                }
            }
        }
        let waveform = waveform.ok_or_else(|| bad("no float waveform input".into()))?;
        let output = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| bad("no outputs".into()))?;
        let mut model = UserCtc {
            session: Mutex::new(session),
            path,
            waveform,
            extra,
            output,
            batches: false,
            symbols,
        };
        model.batches = !model.extra.is_empty() && model.padding_is_masked()?;
        Ok(model)
    }

    /// Whether a clip padded beside a longer one gets the emissions it gets alone:
    /// a mask or lengths input is not enough (a model may pool over its whole input),
    /// so it is measured on a second of noise padded to a second and a half.
    fn padding_is_masked(&self) -> Result<bool> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
                })
                .collect()
        };
        let (short, long) = (noise(16_000), noise(24_000));
        let alone = self.run_batch(&[&short], false, None)?;
        let padded = self.run_batch(&[&short, &long], false, None)?;
        let (a, fa, _) = &alone[0];
        let (b, fb, _) = &padded[0];
        let frames = (*fa).min(*fb) * self.symbols.len();
        Ok(a[..frames]
            .iter()
            .zip(&b[..frames])
            .all(|(x, y)| (x - y).abs() < 1e-2))
    }

    /// Whether clips of different lengths can share a call: the graph takes a mask or
    /// lengths (wav2vec2-large / MMS exports) and, measured at load, a padded clip gets
    /// the emissions it gets alone. Otherwise clips go one per call.
    pub fn batches(&self) -> bool {
        self.batches
    }

    /// Log-probabilities of one clip (16 kHz; zero mean and unit variance first when
    /// `normalize`, as wav2vec2's feature extractor does): frames × vocabulary, the
    /// number of frames and seconds per frame (`frame_s`, else read off the output).
    pub fn emissions(
        &self,
        samples: &[f32],
        normalize: bool,
        frame_s: Option<f64>,
    ) -> Result<(Vec<f32>, usize, f64)> {
        let mut one = self.emissions_batch(&[samples], normalize, frame_s)?;
        Ok(one.remove(0))
    }

    /// [`emissions`](Self::emissions) of several clips in one call, zero-padded to the
    /// longest with the padding masked ([`batches`](Self::batches) must hold for more
    /// than one clip). A clip's frames are its share of the output's, by length.
    pub fn emissions_batch(
        &self,
        clips: &[&[f32]],
        normalize: bool,
        frame_s: Option<f64>,
    ) -> Result<Vec<(Vec<f32>, usize, f64)>> {
        if clips.len() > 1 && !self.batches() {
            return Err(ModelError::InvalidInput(format!(
                "CTC model ({}): padding changes its emissions, so clips cannot share a call",
                self.path.display()
            )));
        }
        self.run_batch(clips, normalize, frame_s)
    }

    /// One call over `clips`, zero-padded, the padding masked where the graph takes it.
    fn run_batch(
        &self,
        clips: &[&[f32]],
        normalize: bool,
        frame_s: Option<f64>,
    ) -> Result<Vec<(Vec<f32>, usize, f64)>> {
        let ctx = || format!("CTC model ({})", self.path.display());
        let (n, longest) = (
            clips.len(),
            clips.iter().map(|c| c.len()).max().unwrap_or(0),
        );
        let mut wave = vec![0f32; n * longest];
        for (row, clip) in wave.chunks_mut(longest.max(1)).zip(clips) {
            row[..clip.len()].copy_from_slice(clip);
            if normalize {
                let len = clip.len().max(1) as f64;
                let mean = clip.iter().map(|&s| s as f64).sum::<f64>() / len;
                let var = clip.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / len;
                let scale = 1.0 / (var + 1e-7).sqrt();
                for v in &mut row[..clip.len()] {
                    *v = ((*v as f64 - mean) * scale) as f32;
                }
            }
        }
        let mut inputs: Vec<(&str, SessionInputValue<'_>)> = Vec::new();
        let wave = Tensor::from_array(([n, longest], wave)).map_err(ort_error(ctx()))?;
        inputs.push((&self.waveform, wave.into()));
        for e in &self.extra {
            let (name, value) = match e {
                Extra::Lengths(name) => (
                    name,
                    Tensor::from_array((
                        [n],
                        clips.iter().map(|c| c.len() as i64).collect::<Vec<_>>(),
                    )),
                ),
                Extra::AttentionMask(name) => {
                    let mut mask = vec![0i64; n * longest];
                    for (row, clip) in mask.chunks_mut(longest.max(1)).zip(clips) {
                        row[..clip.len()].fill(1);
                    }
                    (name, Tensor::from_array(([n, longest], mask)))
                }
            };
            inputs.push((name, value.map_err(ort_error(ctx()))?.into()));
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(inputs).map_err(ort_error(ctx()))?;
        let (shape, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        let vocabulary = self.symbols.len();
        if shape.len() != 3
            || shape[0] as usize != n
            || shape[2] as usize != vocabulary
            || shape[1] < 1
        {
            return Err(ModelError::Ort {
                context: ctx(),
                message: format!(
                    "output `{}` of shape {shape:?}, want [{n}, frames, {vocabulary}] (the vocabulary's size)",
                    self.output
                ),
            });
        }
        let total = shape[1] as usize;
        // Samples per frame, to the millisecond: convolutional front ends give a frame
        // or so less than samples / stride.
        let step = frame_s.unwrap_or_else(|| {
            let per_frame = longest as f64 / total as f64 / SAMPLE_RATE;
            (per_frame * 1000.0).round() / 1000.0
        });
        Ok(clips
            .iter()
            .enumerate()
            .map(|(i, clip)| {
                let frames = if clip.len() == longest {
                    total
                } else {
                    ((total * clip.len()) / longest.max(1)).clamp(1, total)
                };
                let row = &values[i * total * vocabulary..][..frames * vocabulary];
                let mut out = row.to_vec();
                for frame in out.chunks_mut(vocabulary) {
                    let max = frame.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = frame.iter().map(|v| (v - max).exp()).sum();
                    let log_sum = max + sum.ln();
                    frame.iter_mut().for_each(|v| *v -= log_sum);
                }
                (out, frames, step)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn characters_follow_the_vocabularys_case_and_skip_what_it_lacks() {
        let upper = CtcUnits::from_vocabulary(
            symbols(&["<pad>", "|", "A", "B", "C", "'"]),
            Units::Characters,
            "<pad>",
            Some("|"),
        )
        .unwrap();
        assert_eq!((upper.blank(), upper.word_delimiter()), (0, Some(1)));
        assert_eq!(
            upper.words(&["cab,", "b'a"], "en").unwrap(),
            vec![vec![4, 2, 3], vec![3, 5, 2]]
        );
        let lower = CtcUnits::from_vocabulary(
            symbols(&["a", "é", "<blank>"]),
            Units::Characters,
            "<blank>",
            None,
        )
        .unwrap();
        // NFKC composes e + combining acute into é.
        assert_eq!(lower.words(&["Ae\u{301}"], "fr").unwrap(), vec![vec![0, 1]]);
        assert_eq!(lower.word_delimiter(), None);
        let err = CtcUnits::from_vocabulary(symbols(&["a"]), Units::Characters, "<pad>", None)
            .unwrap_err();
        assert!(err.contains("<pad>"), "{err}");
    }

    #[test]
    fn vocabularies_are_read_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocab.json");
        std::fs::write(&path, r#"{"b": 1, "<pad>": 0, "a": 2}"#).unwrap();
        assert_eq!(
            read_vocabulary(&path).unwrap(),
            symbols(&["<pad>", "b", "a"])
        );
        std::fs::write(&path, r#"{"b": 5}"#).unwrap();
        let err = read_vocabulary(&path).unwrap_err().to_string();
        assert!(err.contains("vocab.json") && err.contains('5'), "{err}");
    }
}
