//! Pure text functions for speech corpora, meant to be exposed as SQL functions.
//!
//! Everything here is a plain function over `&str` with no I/O and no global state, so the
//! functions are cheap to wrap as scalar UDFs and easy to test:
//!
//! - [`normalize_text`]: a documented, language-aware normalisation used before comparing
//!   transcripts (NFKC, lowercase, numbers spelt out, punctuation removed, whitespace collapsed).
//! - [`wer`], [`cer`], [`wer_normalized`], [`cer_normalized`], [`edit_distance`]: word and
//!   character error rates with the semantics of jiwer 4.0 (see [`distance`]).
//! - [`text_lang`]: language identification of a transcript (ISO 639-1 code and confidence).
//! - [`chars_per_sec`]: speaking rate, a cheap filter for misaligned audio/text pairs.

pub mod distance;
pub mod lang;
pub mod normalize;
mod numbers;
pub mod rate;
pub mod spans;

pub use distance::{cer, cer_normalized, edit_distance, wer, wer_normalized};
pub use lang::text_lang;
pub use normalize::normalize_text;
pub use rate::chars_per_sec;
pub use spans::{modality_runs, normalize_for_speech, sentences, spoken_spans};
