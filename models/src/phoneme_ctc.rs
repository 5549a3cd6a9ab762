//! The multilingual IPA phoneme CTC model of the `hama` wheel
//! (`asr_waveform_fp16.onnx`, Apache-2.0), for forced alignment, and the text side:
//! words → IPA by espeak-ng → the model's phoneme inventory.
//!
//! Model: `waveform` f32 [B, samples] at 16 kHz and `waveform_lengths` i64 [B] →
//! `log_probs` [B, T, 191], one frame per 20 ms. Vocabulary: `g2p_vocab.json`'s
//! `decoder` list (189 entries: `<pad>`, `<sos>`, `<eos>`, `<unk>`, space, IPA
//! symbols and clusters), then `<wb>` (189, a word boundary) and `<blank>` (190).
//!
//! Text: `espeak-ng -q --ipa -v VOICE`, one word per line (each word its own clause,
//! so espeak never merges words), then per word: stress (ˈ ˌ), length (ː ˑ), syllable
//! and linking marks (. ‿ ‖ |) are dropped — the model's targets carry none; espeak's
//! affricates without a tie bar (dʒ tʃ tɕ dʑ ts dz) become the model's tied symbols
//! where it has them; then greedy longest match over the inventory, trying a
//! character's Unicode decomposition (base letter, then combining marks, which the
//! inventory has as tokens) when the composed form is missing. A symbol with no
//! counterpart is left out and counted; a word with none left is unaligned.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex};

use ort::session::Session;
use ort::value::TensorRef;
use unicode_normalization::UnicodeNormalization;

use crate::runtime::error::{one_line, ort_error};
use crate::runtime::{ModelError, ModelRef, Result, SessionConfig, SessionPool, create_session};

/// The registry's artifact: a directory with the model and its vocabulary.
pub const MODEL_NAME: &str = "phoneme-ctc";
const MODEL_FILE: &str = "asr_waveform_fp16.onnx";
const VOCAB_FILE: &str = "g2p_vocab.json";
/// Seconds per output frame.
pub const FRAME_S: f64 = 0.02;
/// Samples per second of the input.
pub const SAMPLE_RATE: usize = 16_000;

/// The registry's model, hashed (model and vocabulary): what a plan carries.
pub fn model_ref() -> Result<ModelRef> {
    ModelRef::hashed(MODEL_NAME, MODEL_NAME, &[MODEL_FILE, VOCAB_FILE])
}

/// The model's output symbols.
#[derive(Clone, Debug)]
pub struct Inventory {
    symbols: Vec<String>,
    index: HashMap<String, u32>,
    longest: usize,
    pub blank: u32,
    /// The symbol between words, if the model has one.
    pub word_boundary: Option<u32>,
}

impl Inventory {
    /// From `g2p_vocab.json`'s `decoder` list; `<wb>` and `<blank>` follow it.
    pub fn from_decoder(decoder: Vec<String>) -> Self {
        let mut symbols = decoder;
        let word_boundary = symbols.len() as u32;
        symbols.push("<wb>".into());
        let blank = symbols.len() as u32;
        symbols.push("<blank>".into());
        Self::new(symbols, blank, Some(word_boundary))
    }

    /// From every output symbol by id; `<…>` and blank symbols are never targets.
    pub fn new(symbols: Vec<String>, blank: u32, word_boundary: Option<u32>) -> Self {
        let index: HashMap<String, u32> = symbols
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                let id = *i as u32;
                id != blank
                    && Some(id) != word_boundary
                    && !s.starts_with('<')
                    && !s.trim().is_empty()
            })
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        let longest = index.keys().map(|s| s.chars().count()).max().unwrap_or(1);
        Inventory {
            symbols,
            index,
            longest,
            blank,
            word_boundary,
        }
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    pub fn symbol(&self, token: u32) -> &str {
        self.symbols.get(token as usize).map_or("?", String::as_str)
    }

    /// One word's IPA (as espeak-ng writes it) as model tokens, and how many of its
    /// symbols have no counterpart in the inventory.
    pub fn tokens(&self, ipa: &str) -> (Vec<u32>, usize) {
        let cleaned = normalise_ipa(ipa);
        let chars: Vec<char> = cleaned.chars().collect();
        let (mut tokens, mut unmapped, mut at) = (Vec::new(), 0, 0);
        while at < chars.len() {
            let mut matched = false;
            for len in (1..=self.longest.min(chars.len() - at)).rev() {
                let piece: String = chars[at..at + len].iter().collect();
                if let Some(&t) = self.index.get(&piece) {
                    tokens.push(t);
                    at += len;
                    matched = true;
                    break;
                }
            }
            if matched {
                continue;
            }
            // A composed letter the inventory lacks: its base and combining marks.
            let decomposed: Vec<String> = chars[at].to_string().nfd().map(String::from).collect();
            let parts: Vec<u32> = decomposed
                .iter()
                .filter_map(|p| self.index.get(p).copied())
                .collect();
            if decomposed.len() > 1 && !parts.is_empty() {
                tokens.extend(parts);
            } else {
                unmapped += 1;
            }
            at += 1;
        }
        (tokens, unmapped)
    }
}

/// espeak-ng's IPA without the marks the model's targets never have, affricates tied.
fn normalise_ipa(ipa: &str) -> String {
    let stripped: String = ipa
        .chars()
        .filter(|c| {
            !matches!(
                c,
                'ˈ' | 'ˌ' | 'ː' | 'ˑ' | '.' | '‿' | '‖' | '|' | '-' | '_' | '\''
            ) && !c.is_whitespace()
        })
        .collect();
    stripped
        .replace("dʒ", "d͡ʒ")
        .replace("tʃ", "t͡ʃ")
        .replace("tɕ", "t͡ɕ")
        .replace("dʑ", "d͡ʑ")
}

/// The espeak-ng voice for a language code (`en` → `en-us`, as the model's English
/// targets are American; `pt-BR` → `pt-br`).
pub fn espeak_voice(language: &str) -> String {
    let l = language.trim().to_ascii_lowercase().replace('_', "-");
    match l.as_str() {
        "en" => "en-us".into(),
        "zh" => "cmn".into(),
        _ => l,
    }
}

static VOICES: LazyLock<Mutex<HashMap<String, bool>>> = LazyLock::new(Default::default);
static IPA_CACHE: LazyLock<Mutex<HashMap<(String, String), String>>> =
    LazyLock::new(Default::default);

/// Whether espeak-ng has `voice` (`espeak-ng --voices=LANG`), asked once per process.
pub fn espeak_knows(voice: &str) -> bool {
    if let Some(&known) = VOICES
        .lock()
        .ok()
        .and_then(|m| m.get(voice).copied())
        .as_ref()
    {
        return known;
    }
    let known = Command::new("espeak-ng")
        .args(["-q", "-v", voice, "--ipa", "a"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if let Ok(mut m) = VOICES.lock() {
        m.insert(voice.to_string(), known);
    }
    known
}

/// Each word's IPA in `voice`, words as written (punctuation is stripped before
/// espeak-ng sees them). One espeak-ng process per call, one word per line; words
/// seen before in this process come from a cache.
pub fn phonemize(words: &[&str], voice: &str) -> std::result::Result<Vec<String>, String> {
    let spoken: Vec<String> = words.iter().map(|w| speakable(w)).collect();
    let mut out: Vec<Option<String>> = spoken
        .iter()
        .map(|w| {
            if w.is_empty() {
                return Some(String::new());
            }
            IPA_CACHE
                .lock()
                .ok()
                .and_then(|c| c.get(&(voice.to_string(), w.clone())).cloned())
        })
        .collect();
    let missing: Vec<usize> = (0..out.len()).filter(|i| out[*i].is_none()).collect();
    if !missing.is_empty() {
        let input: String = missing
            .iter()
            .map(|&i| format!("{}.\n", spoken[i]))
            .collect();
        let lines = espeak_lines(&input, voice)?;
        let lines = if lines.len() == missing.len() {
            lines
        } else {
            // espeak-ng read some word as more than one clause: one call per word.
            missing
                .iter()
                .map(|&i| espeak_lines(&format!("{}.\n", spoken[i]), voice).map(|l| l.concat()))
                .collect::<std::result::Result<_, _>>()?
        };
        for (&i, ipa) in missing.iter().zip(lines) {
            if let Ok(mut c) = IPA_CACHE.lock() {
                c.insert((voice.to_string(), spoken[i].clone()), ipa.clone());
            }
            out[i] = Some(ipa);
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

/// A word as espeak-ng should read it alone: no clause punctuation, no line breaks.
fn speakable(word: &str) -> String {
    word.chars()
        .filter(|c| !c.is_whitespace())
        .filter(|c| {
            !matches!(
                c,
                '.' | ','
                    | ';'
                    | ':'
                    | '!'
                    | '?'
                    | '¿'
                    | '¡'
                    | '"'
                    | '“'
                    | '”'
                    | '«'
                    | '»'
                    | '('
                    | ')'
                    | '['
                    | ']'
                    | '…'
                    | '—'
                    | '–'
            )
        })
        .collect()
}

fn espeak_lines(input: &str, voice: &str) -> std::result::Result<Vec<String>, String> {
    let out = run_espeak(&["-q", "--ipa", "-v", voice], input, voice)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// A loaded phoneme CTC model with its inventory.
pub struct PhonemeCtc {
    session: Mutex<Session>,
    path: PathBuf,
    pub inventory: Arc<Inventory>,
}

impl std::fmt::Debug for PhonemeCtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhonemeCtc")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PhonemeCtc {
    /// The process's pool of sessions for `model` (verified once per process).
    pub fn pool(model: &ModelRef, config: &SessionConfig) -> Result<Arc<SessionPool<Self>>> {
        SessionPool::shared(model, config, Self::from_dir)
    }

    /// Loads `<dir>/asr_waveform_fp16.onnx` and `<dir>/g2p_vocab.json`.
    pub fn from_dir(dir: &Path, config: &SessionConfig) -> Result<Self> {
        let vocab_path = dir.join(VOCAB_FILE);
        let load_err = |message: String| ModelError::ModelLoad {
            path: vocab_path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&vocab_path).map_err(|e| load_err(e.to_string()))?;
        let vocab: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| load_err(e.to_string()))?;
        let decoder: Vec<String> = vocab
            .get("decoder")
            .and_then(|d| d.as_array())
            .ok_or_else(|| load_err("no `decoder` list".into()))?
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect();
        let inventory = Inventory::from_decoder(decoder);
        let path = dir.join(MODEL_FILE);
        let session = create_session(&path, config)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if !inputs.contains(&"waveform") || !inputs.contains(&"waveform_lengths") {
            return Err(ModelError::ModelLoad {
                path,
                message: format!("not the hama waveform CTC model (inputs {inputs:?})"),
            });
        }
        Ok(PhonemeCtc {
            session: Mutex::new(session),
            path,
            inventory: Arc::new(inventory),
        })
    }

    /// Log-probabilities of one clip (16 kHz, [-1, 1]): frames × inventory, row-major.
    pub fn emissions(&self, samples: &[f32]) -> Result<(Vec<f32>, usize)> {
        let ctx = || format!("phoneme CTC ({})", self.path.display());
        let wave = TensorRef::from_array_view(([1usize, samples.len()], samples))
            .map_err(ort_error(ctx()))?;
        let lengths = [samples.len() as i64];
        let lengths =
            TensorRef::from_array_view(([1usize], &lengths[..])).map_err(ort_error(ctx()))?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs!["waveform" => wave, "waveform_lengths" => lengths])
            .map_err(ort_error(ctx()))?;
        let (shape, values) = outputs["log_probs"]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        let vocabulary = self.inventory.len();
        if shape.len() != 3 || shape[2] as usize != vocabulary {
            return Err(ModelError::Ort {
                context: ctx(),
                message: format!("log_probs of shape {shape:?}, want [1, T, {vocabulary}]"),
            });
        }
        let frames = match outputs.get("out_lengths") {
            Some(v) => v
                .try_extract_tensor::<i64>()
                .map(|(_, l)| l.first().copied().unwrap_or(shape[1]) as usize)
                .unwrap_or(shape[1] as usize),
            None => shape[1] as usize,
        }
        .min(shape[1] as usize);
        Ok((values[..frames * vocabulary].to_vec(), frames))
    }
}

/// Runs espeak-ng with `text` on stdin; its stdout.
pub(crate) fn run_espeak(
    args: &[&str],
    text: &str,
    voice: &str,
) -> std::result::Result<Vec<u8>, String> {
    let mut child = Command::new("espeak-ng")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "espeak-ng: cannot run it ({e}): install Debian's espeak-ng (bash scripts/setup.sh)"
            )
        })?;
    // Written from another thread: espeak-ng writes while it reads.
    let mut stdin = child.stdin.take();
    let input = text.as_bytes().to_vec();
    let writer = std::thread::spawn(move || stdin.as_mut().map(|s| s.write_all(&input)));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("espeak-ng -v {voice}: {e}"))?;
    if let Ok(Some(Err(e))) = writer.join() {
        return Err(format!("espeak-ng -v {voice}: {e}"));
    }
    if !out.status.success() {
        return Err(format!(
            "espeak-ng -v {voice}: {}",
            one_line(String::from_utf8_lossy(&out.stderr))
        ));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        let decoder = [
            "<pad>", "<sos>", "<eos>", "<unk>", " ", "a", "aɪ", "d", "d͡ʒ", "n", "æ", "ð", "ə", "ʒ",
            "i", "l", "ɝ", "̃", "o",
        ];
        Inventory::from_decoder(decoder.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn espeak_ipa_maps_onto_the_inventory_longest_symbol_first() {
        let inv = inventory();
        assert_eq!(
            (inv.word_boundary, inv.blank, inv.len()),
            (Some(19), 20, 21)
        );
        // Stress and length marks go, the affricate is tied, "aɪ" is one symbol.
        let (tokens, unmapped) = inv.tokens("dʒˈaɪn");
        let symbols: Vec<&str> = tokens.iter().map(|t| inv.symbol(*t)).collect();
        assert_eq!(symbols, ["d͡ʒ", "aɪ", "n"]);
        assert_eq!(unmapped, 0);
        let (tokens, unmapped) = inv.tokens("lˈiːʒɝ");
        assert_eq!(tokens.len(), 4);
        assert_eq!(unmapped, 0);
        // A symbol the model lacks is counted; a composed one splits into base + mark.
        let (tokens, unmapped) = inv.tokens("ɣæ");
        assert_eq!((tokens.len(), unmapped), (1, 1));
        let (tokens, _) = inv.tokens("õ");
        let symbols: Vec<&str> = tokens.iter().map(|t| inv.symbol(*t)).collect();
        assert_eq!(symbols, ["o", "̃"]);
    }

    #[test]
    fn languages_map_to_espeak_voices() {
        assert_eq!(espeak_voice("en"), "en-us");
        assert_eq!(espeak_voice("pt_BR"), "pt-br");
        assert_eq!(espeak_voice("de"), "de");
        assert_eq!(speakable("“Hello,”"), "Hello");
    }
}
