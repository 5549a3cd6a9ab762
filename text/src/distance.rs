//! Edit distance, word error rate and character error rate.
//!
//! The rates follow jiwer 4.0.0 with its default transforms (`wer_default`, `cer_default`),
//! so numbers computed here can be compared with numbers computed by jiwer:
//!
//! - **WER** = (S + D + I) / N over words, where S, D, I are the substitutions, deletions and
//!   insertions of a minimum (Levenshtein, unit cost) alignment and N is the number of words
//!   in the reference. Words are the maximal runs of non-whitespace characters. jiwer
//!   collapses runs of two or more whitespace characters to a space and then splits on `' '`
//!   only; the two agree except when words are separated by a *single* non-space whitespace
//!   character (a lone tab or newline), which jiwer keeps inside the word and we treat as a
//!   separator.
//! - **CER** = (S + D + I) / N over characters (Unicode scalar values, which is what a Python
//!   `str` iterates over). Exactly like jiwer's `cer_default`, the strings are only stripped of
//!   leading and trailing whitespace: spaces *inside* the string are characters and count,
//!   runs of spaces are not collapsed. Whitespace is Python's `str.isspace()` set (Unicode
//!   `White_Space` plus the separators U+001C..U+001F).
//! - **Empty reference**: if both sides are empty the rate is `Some(0.0)`; if only the
//!   reference is empty the rate is undefined and we return `None` (jiwer returns the number
//!   of insertions there, which is not a rate).
//!
//! [`wer`] and [`cer`] compare the strings as given; [`wer_normalized`] and [`cer_normalized`]
//! run both through [`normalize_text`] first.

use crate::normalize::normalize_text;

/// Levenshtein distance between two sequences: the minimum number of substitutions, deletions
/// and insertions (each of cost 1) that turn `a` into `b`.
///
/// Runs in O(n·m) time and O(min(n, m)) memory: one row over the shorter sequence is kept.
///
/// ```
/// use speechmill_text::edit_distance;
/// assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
/// ```
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    // The distance is symmetric, so let the row run over the shorter sequence.
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.len();
    }
    // row[j] = distance between the current prefix of `long` and short[..j].
    let mut row: Vec<usize> = (0..=short.len()).collect();
    for (i, x) in long.iter().enumerate() {
        let mut diagonal = row[0]; // distance(long[..i], short[..0])
        row[0] = i + 1;
        for (j, y) in short.iter().enumerate() {
            let substitution = diagonal + usize::from(x != y);
            let deletion = row[j + 1] + 1;
            let insertion = row[j] + 1;
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(deletion).min(insertion);
        }
    }
    row[short.len()]
}

/// Whitespace as Python's `str.isspace()` (and so jiwer's `strip()`) sees it: Unicode
/// `White_Space` plus the information separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

/// The words of `s`: maximal runs of non-whitespace characters.
fn words(s: &str) -> Vec<&str> {
    s.split(is_py_space).filter(|w| !w.is_empty()).collect()
}

/// Errors over reference length, with the empty-reference rule of this module.
fn rate<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> Option<f64> {
    if reference.is_empty() {
        return hypothesis.is_empty().then_some(0.0);
    }
    Some(edit_distance(reference, hypothesis) as f64 / reference.len() as f64)
}

/// Word error rate of `hypothesis` against `reference`, compared as given (split on
/// whitespace, no normalisation): (substitutions + deletions + insertions) / reference words.
///
/// Both empty → `Some(0.0)`; empty reference with a non-empty hypothesis → `None`. The value
/// can exceed 1 when the hypothesis has many insertions. See the [module docs](self) for how
/// this matches jiwer 4.0.
///
/// ```
/// use speechmill_text::wer;
/// assert_eq!(wer("the cat sat", "the cat sat down"), Some(1.0 / 3.0));
/// ```
pub fn wer(reference: &str, hypothesis: &str) -> Option<f64> {
    rate(&words(reference), &words(hypothesis))
}

/// Character error rate of `hypothesis` against `reference`, compared as given: both are
/// stripped of leading/trailing whitespace, then every Unicode scalar value counts, inner
/// spaces included (jiwer 4.0 `cer_default`).
///
/// Both empty → `Some(0.0)`; empty reference with a non-empty hypothesis → `None`.
///
/// ```
/// use speechmill_text::cer;
/// assert_eq!(cer("abcd", "abed"), Some(0.25));
/// ```
pub fn cer(reference: &str, hypothesis: &str) -> Option<f64> {
    let chars = |s: &str| s.trim_matches(is_py_space).chars().collect::<Vec<_>>();
    rate(&chars(reference), &chars(hypothesis))
}

/// [`wer`] after running both strings through [`normalize_text`] with `lang`.
///
/// ```
/// use speechmill_text::wer_normalized;
/// assert_eq!(wer_normalized("I have 3 cats.", "i have three cats", Some("en")), Some(0.0));
/// ```
pub fn wer_normalized(reference: &str, hypothesis: &str, lang: Option<&str>) -> Option<f64> {
    wer(
        &normalize_text(reference, lang),
        &normalize_text(hypothesis, lang),
    )
}

/// [`cer`] after running both strings through [`normalize_text`] with `lang`. The normalised
/// strings have single spaces between words, and those spaces count as characters.
pub fn cer_normalized(reference: &str, hypothesis: &str, lang: Option<&str>) -> Option<f64> {
    cer(
        &normalize_text(reference, lang),
        &normalize_text(hypothesis, lang),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (reference, hypothesis, jiwer.wer, jiwer.cer).
    ///
    /// Values computed with jiwer 4.0.0 (rapidfuzz 3.14.6), Python 3.11, default transforms:
    /// `python -c 'import jiwer; print(repr(jiwer.wer(r, h)), repr(jiwer.cer(r, h)))'`
    /// for each pair `(r, h)` below.
    const JIWER_4_0_0: &[(&str, &str, f64, f64)] = &[
        ("the cat sat on the mat", "the cat sat on the mat", 0.0, 0.0),
        (
            "the cat sat on the mat",
            "the dog sat on the mat",
            0.16666666666666666,
            0.13636363636363635,
        ),
        (
            "the cat sat on the mat",
            "the cat sat on mat",
            0.16666666666666666,
            0.18181818181818182,
        ),
        (
            "the cat sat",
            "the big cat sat down",
            0.6666666666666666,
            0.8181818181818182,
        ),
        ("hello world", "", 1.0, 1.0),
        ("a b c d", "d c b a", 1.0, 0.5714285714285714),
        (
            "the the the",
            "the the",
            0.3333333333333333,
            0.36363636363636365,
        ),
        (
            "one two three",
            "one two two three three",
            0.6666666666666666,
            0.7692307692307693,
        ),
        (
            "  leading and trailing  ",
            "leading  and trailing",
            0.0,
            0.05,
        ),
        (
            "grüße aus münchen",
            "grusse aus münchen",
            0.3333333333333333,
            0.17647058823529413,
        ),
        ("ich möchte äpfel", "ich mochte äpfel und birnen", 1.0, 0.75),
        ("मैं घर जा रहा हूँ", "मैं घर जा रही हूँ", 0.2, 0.058823529411764705),
        ("नमस्ते दुनिया", "नमस्ते", 0.5, 0.5384615384615384),
        ("我爱北京天安门", "我爱北京天安", 1.0, 0.14285714285714285),
        ("你好 世界", "你好世界", 1.0, 0.2),
        (
            "مرحبا بالعالم",
            "مرحبا بالعالم الجميل",
            0.5,
            0.5384615384615384,
        ),
        (
            "كيف حالك اليوم",
            "كيف حالك",
            0.3333333333333333,
            0.42857142857142855,
        ),
        ("abc", "xyz", 1.0, 1.0),
        ("a", "a b c d e f", 5.0, 10.0),
    ];

    fn assert_close(what: &str, r: &str, h: &str, got: Option<f64>, want: f64) {
        let got = got.unwrap_or_else(|| panic!("{what}({r:?}, {h:?}) is None"));
        assert!(
            (got - want).abs() < 1e-9,
            "{what}({r:?}, {h:?}) = {got}, jiwer 4.0.0 says {want}"
        );
    }

    #[test]
    fn wer_matches_jiwer_4_0_0() {
        for &(r, h, want, _) in JIWER_4_0_0 {
            assert_close("wer", r, h, wer(r, h), want);
        }
    }

    #[test]
    fn cer_matches_jiwer_4_0_0() {
        for &(r, h, _, want) in JIWER_4_0_0 {
            assert_close("cer", r, h, cer(r, h), want);
        }
    }

    #[test]
    fn empty_reference_and_hypothesis_is_zero() {
        assert_eq!(wer("", ""), Some(0.0));
        assert_eq!(cer("", ""), Some(0.0));
        assert_eq!(wer("  ", "\t"), Some(0.0));
        assert_eq!(cer("  ", "\n"), Some(0.0));
    }

    #[test]
    fn empty_reference_with_hypothesis_is_undefined() {
        assert_eq!(wer("", "a b"), None);
        assert_eq!(cer("", "a b"), None);
        assert_eq!(wer_normalized("?!", "hello", None), None);
    }

    #[test]
    fn empty_hypothesis_deletes_everything() {
        assert_eq!(wer("a b c", ""), Some(1.0));
        assert_eq!(cer("abc", ""), Some(1.0));
    }

    #[test]
    fn wer_splits_on_any_whitespace() {
        assert_eq!(wer("a\tb\nc", "a b c"), Some(0.0));
        assert_eq!(wer("a \u{3000} b", "a b"), Some(0.0));
    }

    #[test]
    fn cer_strips_information_separators_like_python() {
        assert_eq!(cer("\u{1F}ab\u{1C}", "ab"), Some(0.0));
    }

    #[test]
    fn cer_counts_inner_spaces_without_collapsing_them() {
        assert_eq!(cer("a  b", "a b"), Some(0.25));
    }

    #[test]
    fn normalized_rates_ignore_case_punctuation_and_number_format() {
        assert_eq!(
            wer_normalized(
                "Hello, World! I'm 42.",
                "hello world i'm forty-two",
                Some("en")
            ),
            Some(0.0)
        );
        assert_eq!(cer_normalized("ＡＢＣ", "abc", None), Some(0.0));
        assert_eq!(
            wer_normalized("Ich habe 3 Katzen", "ich habe drei katzen", Some("de")),
            Some(0.25)
        );
    }

    #[test]
    fn edit_distance_counts_unit_cost_operations() {
        assert_eq!(edit_distance::<u8>(b"", b""), 0);
        assert_eq!(edit_distance(b"abc", b""), 3);
        assert_eq!(edit_distance(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(edit_distance(b"sitting", b"kitten"), 3);
        assert_eq!(edit_distance(b"flaw", b"lawn"), 2);
        assert_eq!(edit_distance(&[1, 2, 3, 4], &[1, 3, 4, 5]), 2);
    }

    #[test]
    fn edit_distance_matches_full_matrix_on_many_pairs() {
        // Textbook O(n·m)-memory dynamic programme as an oracle.
        fn full(a: &[u8], b: &[u8]) -> usize {
            let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
            for (i, row) in d.iter_mut().enumerate() {
                row[0] = i;
            }
            for (j, cell) in d[0].iter_mut().enumerate() {
                *cell = j;
            }
            #[allow(clippy::needless_range_loop)] // the indices are the algorithm
            for i in 1..=a.len() {
                for j in 1..=b.len() {
                    let cost = usize::from(a[i - 1] != b[j - 1]);
                    d[i][j] = (d[i - 1][j] + 1)
                        .min(d[i][j - 1] + 1)
                        .min(d[i - 1][j - 1] + cost);
                }
            }
            d[a.len()][b.len()]
        }
        // Small deterministic pseudo-random sequences over a 3-letter alphabet.
        let mut state: u32 = 12345;
        let mut next = || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 16) as usize
        };
        for _ in 0..300 {
            let a: Vec<u8> = (0..next() % 9).map(|_| b'a' + (next() % 3) as u8).collect();
            let b: Vec<u8> = (0..next() % 9).map(|_| b'a' + (next() % 3) as u8).collect();
            assert_eq!(edit_distance(&a, &b), full(&a, &b), "{a:?} vs {b:?}");
        }
    }
}
