//! Token ids ↔ text: the checkpoint's `tokenizer.json` (byte-level BPE) through the
//! `tokenizers` crate, word grouping for word timestamps (Whisper's
//! `split_to_word_tokens`) and the compression ratio used by temperature fallback.

use std::io::Write;
use std::path::Path;

use tokenizers::Tokenizer;

use crate::runtime::{ModelError, Result};

/// Languages written without spaces: words are split on unicode boundaries.
const NO_SPACE_LANGUAGES: &[&str] = &["zh", "ja", "th", "lo", "my", "yue"];
const PREPEND_PUNCTUATION: &str = "\"'“¿([{-";
const APPEND_PUNCTUATION: &str = "\"'.。,，!！?？:：”)]}、";

pub struct WhisperTokenizer {
    inner: Tokenizer,
    eot: u32,
}

impl std::fmt::Debug for WhisperTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperTokenizer").finish_non_exhaustive()
    }
}

impl WhisperTokenizer {
    pub fn load(path: &Path, eot: u32) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| ModelError::ModelLoad {
            path: path.to_path_buf(),
            message: format!("tokenizer: {e}"),
        })?;
        Ok(WhisperTokenizer { inner, eot })
    }

    /// Text of the text tokens (special tokens dropped), like faster-whisper's
    /// `tokenizer.decode`.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let text: Vec<u32> = tokens.iter().copied().filter(|&t| t < self.eot).collect();
        self.inner.decode(&text, false).unwrap_or_default()
    }

    /// Text tokens of `text` (no special tokens), as Whisper reads a transcript it is
    /// given: the text is expected to start with a space, like decoded text does.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::InvalidInput(format!("tokenizer: {e}")))
    }

    /// Text of any tokens, special ones included as their names.
    fn decode_all(&self, tokens: &[u32]) -> String {
        self.inner.decode(tokens, false).unwrap_or_default()
    }

    /// Groups tokens into words: `(word text, its tokens)`.
    pub fn split_to_word_tokens(&self, tokens: &[u32], language: &str) -> Vec<(String, Vec<u32>)> {
        if NO_SPACE_LANGUAGES.contains(&language) {
            self.split_on_unicode(tokens)
        } else {
            self.split_on_spaces(tokens)
        }
    }

    /// Splits where the decoded text is a complete run of characters (a token that
    /// ends mid-character waits for the next).
    fn split_on_unicode(&self, tokens: &[u32]) -> Vec<(String, Vec<u32>)> {
        let full: Vec<char> = self.decode_all(tokens).chars().collect();
        let mut words = Vec::new();
        let mut current = Vec::new();
        let mut offset = 0usize;
        for &t in tokens {
            current.push(t);
            let decoded = self.decode_all(&current);
            let replacement = decoded.chars().position(|c| c == '\u{fffd}');
            let complete = match replacement {
                None => true,
                Some(i) => full.get(offset + i) == Some(&'\u{fffd}'),
            };
            if complete {
                offset += decoded.chars().count();
                words.push((decoded, std::mem::take(&mut current)));
            }
        }
        words
    }

    fn split_on_spaces(&self, tokens: &[u32]) -> Vec<(String, Vec<u32>)> {
        let mut words: Vec<(String, Vec<u32>)> = Vec::new();
        for (sub, sub_tokens) in self.split_on_unicode(tokens) {
            let special = sub_tokens.first().is_some_and(|&t| t >= self.eot);
            let with_space = sub.starts_with(' ');
            let trimmed = sub.trim();
            let punctuation =
                !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_punctuation());
            match words.last_mut() {
                Some(last) if !(special || with_space || punctuation) => {
                    last.0.push_str(&sub);
                    last.1.extend(sub_tokens);
                }
                _ => words.push((sub, sub_tokens)),
            }
        }
        words
    }
}

/// A word with its timing, before punctuation is merged.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedWord {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f64,
    pub tokens: usize,
}

/// Attaches opening punctuation to the next word and closing punctuation to the
/// previous one (Whisper's `merge_punctuations`); emptied words are dropped.
pub fn merge_punctuations(words: &mut Vec<TimedWord>) {
    // Prepended: walk backwards, fold a punctuation word into the one after it.
    let n = words.len();
    if n >= 2 {
        let mut i = n as isize - 2;
        let mut j = n - 1;
        while i >= 0 {
            let iu = i as usize;
            let trimmed = words[iu].word.trim().to_string();
            if words[iu].word.starts_with(' ') && is_one_of(&trimmed, PREPEND_PUNCTUATION) {
                let prev = std::mem::replace(
                    &mut words[iu],
                    TimedWord {
                        word: String::new(),
                        start: 0.0,
                        end: 0.0,
                        probability: 0.0,
                        tokens: 0,
                    },
                );
                words[j].word = prev.word + &words[j].word;
                words[j].tokens += prev.tokens;
            } else {
                j = iu;
            }
            i -= 1;
        }
    }
    // Appended: walk forwards, fold a punctuation word into the one before it.
    let mut i = 0;
    let mut j = 1;
    while j < words.len() {
        let follow = words[j].word.clone();
        if !words[i].word.ends_with(' ') && is_one_of(&follow, APPEND_PUNCTUATION) {
            words[i].word.push_str(&follow);
            words[i].tokens += words[j].tokens;
            words[j].word.clear();
            words[j].tokens = 0;
        } else {
            i = j;
        }
        j += 1;
    }
    words.retain(|w| !w.word.is_empty());
}

fn is_one_of(s: &str, set: &str) -> bool {
    let mut chars = s.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if set.contains(c))
}

/// `len(text) / len(zlib(text))`: above 2.4 the text is probably a repetition loop.
pub fn compression_ratio(text: &str) -> f64 {
    if text.is_empty() {
        return 0.0;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    let compressed = encoder
        .write_all(text.as_bytes())
        .and_then(|_| encoder.finish())
        .map(|c| c.len())
        .unwrap_or(text.len());
    text.len() as f64 / compressed.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str) -> TimedWord {
        TimedWord {
            word: w.to_string(),
            start: 0.0,
            end: 0.0,
            probability: 1.0,
            tokens: 1,
        }
    }

    #[test]
    fn punctuation_joins_its_neighbours() {
        let mut words = vec![
            word(" \""),
            word(" Hello"),
            word(","),
            word(" world"),
            word("."),
        ];
        merge_punctuations(&mut words);
        let text: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(text, vec![" \" Hello,", " world."]);
    }

    #[test]
    fn repetitive_text_compresses_well() {
        let loop_text = "the cat sat on the mat ".repeat(20);
        assert!(compression_ratio(&loop_text) > 2.4);
        assert!(compression_ratio("A short, ordinary sentence about speech.") < 2.4);
    }
}
