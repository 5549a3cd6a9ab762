//! Transcript normalisation before comparison or measurement.
//!
//! References and ASR hypotheses differ in ways that are not recognition errors: width and
//! compatibility forms, case, "3" versus "three", punctuation, spacing. [`normalize_text`]
//! removes those differences so that WER/CER and speaking rates measure what was said.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::numbers::{NumberLang, spell_numbers};

/// Normalises a transcript for comparison. The steps, in this order:
///
/// 1. **Unicode NFKC**: compatibility forms fold to their plain equivalents (fullwidth "３" →
///    "3", the ligature "ﬁ" → "fi", no-break spaces → spaces) and characters are composed.
/// 2. **Lowercase**, Unicode-aware ([`str::to_lowercase`]: "Ä" → "ä", final sigma handled).
/// 3. **Numbers spelt out** where the language is covered by `num2words`: `lang` is an
///    ISO 639-1 code, optionally with a region ("en", "en-US", "fr", "fr-BE", "fr-CH", "uk").
///    English, French (with Belgian/Swiss "septante", "nonante") and Ukrainian are covered;
///    integers, English digit grouping ("1,000"), decimals ("3.14", French "3,14") and ordinal
///    suffixes ("21st", "1er") are read. For any other language, and for `None`, digits are
///    left as they are. Numbers are read as cardinals (a year "1990" becomes "one thousand
///    nine hundred and ninety").
/// 4. **Punctuation and symbols removed**: every character that is not a letter, a number or a
///    combining mark (of any script, so Devanagari vowel signs and viramas, Arabic harakat,
///    Thai marks survive) becomes a space; this covers Unicode punctuation, symbols, hyphens
///    and controls. An apostrophe (`'`, `’` or `ʼ`) between two word characters is kept, as
///    `'`, so "don't" and "l'homme" stay one word; other apostrophes become spaces. Zero-width
///    joiners/non-joiners (U+200D/U+200C) are kept as part of words; invisible formatting
///    characters (soft hyphen, bidi marks, byte order mark, word joiner) are dropped.
/// 5. **Whitespace collapsed**: runs of whitespace become one space; the result is trimmed.
///
/// Scripts written without spaces (Chinese, Japanese, Thai) come out as long "words"; compare
/// those with [`crate::cer`], which works per character, rather than [`crate::wer`].
///
/// ```
/// use speechmill_text::normalize_text;
/// assert_eq!(normalize_text("I have 3 cats!", Some("en")), "i have three cats");
/// assert_eq!(normalize_text("Don’t  STOP…", None), "don't stop");
/// ```
pub fn normalize_text(text: &str, lang: Option<&str>) -> String {
    let nfkc: String = text.nfkc().collect();
    let lower = nfkc.to_lowercase();
    let spelt = match lang.and_then(NumberLang::from_tag) {
        Some(number_lang) => spell_numbers(&lower, number_lang),
        None => lower,
    };
    let stripped = strip_punctuation(&spelt);
    collapse_whitespace(&stripped)
}

/// A character that is part of a word: letters and numbers of every script, combining marks,
/// and the zero-width (non-)joiners that shape words in Indic and Persian scripts.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c) || c == '\u{200C}' || c == '\u{200D}'
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

/// Invisible formatting characters that carry no text and must not split a word.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                  // soft hyphen
            | '\u{061C}'            // Arabic letter mark
            | '\u{180E}'            // Mongolian vowel separator
            | '\u{200E}'..='\u{200F}' // left-to-right / right-to-left marks
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{206F}' // bidi isolates, deprecated format characters
            | '\u{FEFF}' // byte order mark / zero-width no-break space
    )
}

/// Step 4 of [`normalize_text`]: punctuation and symbols become spaces, word-internal
/// apostrophes become `'`, invisible formatting characters are dropped.
fn strip_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut prev_is_word = false;
    while let Some(c) = chars.next() {
        // Apostrophes first: U+02BC is a letter (Lm) and would otherwise be kept as is.
        if is_apostrophe(c) {
            if prev_is_word && chars.peek().is_some_and(|&n| is_word_char(n)) {
                out.push('\'');
            } else {
                out.push(' ');
            }
            prev_is_word = false;
        } else if is_word_char(c) {
            out.push(c);
            prev_is_word = true;
        } else if is_invisible_format(c) {
            // Dropped without a trace: the neighbouring characters stay joined.
        } else {
            out.push(' ');
            prev_is_word = false;
        }
    }
    out
}

/// Step 5 of [`normalize_text`]: whitespace runs become one space, ends trimmed.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkc_folds_fullwidth_digits_and_ligatures() {
        assert_eq!(normalize_text("ﬁne ＡＢＣ １２３", None), "fine abc 123");
        // With English numbers the folded digits are then spelt.
        assert_eq!(normalize_text("１２", Some("en")), "twelve");
    }

    #[test]
    fn nfkc_composes_decomposed_accents() {
        // "e" + combining acute → "é"; "A" + combining diaeresis → "ä" after lowercase.
        assert_eq!(
            normalize_text("Cafe\u{301} A\u{308}rger", None),
            "café ärger"
        );
    }

    #[test]
    fn lowercase_is_unicode_aware() {
        assert_eq!(
            normalize_text("ÄÖÜ Straße ΟΔΟΣ ПРИВЕТ", None),
            "äöü straße οδος привет"
        );
    }

    #[test]
    fn punctuation_and_symbols_become_spaces() {
        assert_eq!(
            normalize_text(
                "Hello, world! (yes) «quoted» — well-known; 50% $5 #tag",
                None
            ),
            "hello world yes quoted well known 50 5 tag"
        );
        assert_eq!(normalize_text("你好，世界。", None), "你好 世界");
        assert_eq!(normalize_text("مرحبا، كيف حالك؟", None), "مرحبا كيف حالك");
        assert_eq!(normalize_text("नमस्ते। आप कैसे हैं?", None), "नमस्ते आप कैसे हैं");
    }

    #[test]
    fn whitespace_is_collapsed_and_trimmed() {
        assert_eq!(
            normalize_text("  a \t b\n\nc\u{00A0}d\u{3000}e  ", None),
            "a b c d e"
        );
        assert_eq!(normalize_text("   ", None), "");
        assert_eq!(normalize_text("", Some("en")), "");
        assert_eq!(normalize_text("?!…", None), "");
    }

    #[test]
    fn apostrophes_inside_words_are_kept_and_unified() {
        assert_eq!(normalize_text("Don't", None), "don't");
        assert_eq!(normalize_text("don’t l’homme", None), "don't l'homme");
        assert_eq!(
            normalize_text("'quoted' rock 'n' roll", None),
            "quoted rock n roll"
        );
        assert_eq!(normalize_text("the boys' toys", None), "the boys toys");
        // Ukrainian is written with U+0027, U+2019 or U+02BC; num2words emits U+02BC.
        assert_eq!(normalize_text("м\u{2BC}ясо м’ясо", None), "м'ясо м'ясо");
        assert_eq!(normalize_text("5", Some("uk")), "п'ять");
    }

    #[test]
    fn numbers_are_spelt_for_english() {
        assert_eq!(
            normalize_text("I have 3 cats", Some("en")),
            "i have three cats"
        );
        assert_eq!(
            normalize_text("It costs 42 dollars, 1,000 in total.", Some("en-US")),
            "it costs forty two dollars one thousand in total"
        );
        assert_eq!(
            normalize_text("the 2nd time", Some("en")),
            "the second time"
        );
    }

    #[test]
    fn numbers_are_spelt_for_french() {
        assert_eq!(
            normalize_text("J'ai 3 chats", Some("fr")),
            "j'ai trois chats"
        );
        assert_eq!(normalize_text("80 ans", Some("fr")), "quatre vingts ans");
        assert_eq!(normalize_text("70 ans", Some("fr-BE")), "septante ans");
        assert_eq!(
            normalize_text("3,5 km", Some("fr")),
            "trois virgule cinq km"
        );
    }

    #[test]
    fn numbers_are_kept_as_digits_for_uncovered_languages() {
        // num2words has no German: digits stay, which is consistent on both sides of a WER.
        assert_eq!(
            normalize_text("Ich habe 3 Katzen", Some("de")),
            "ich habe 3 katzen"
        );
        assert_eq!(normalize_text("I have 3 cats", None), "i have 3 cats");
        assert_eq!(normalize_text("I have 3 cats", Some("xx")), "i have 3 cats");
    }

    #[test]
    fn digits_of_other_scripts_are_kept() {
        assert_eq!(normalize_text("४२ ٤٢", Some("en")), "४२ ٤٢");
    }

    #[test]
    fn non_latin_scripts_and_combining_marks_survive() {
        // Devanagari virama (U+094D) and vowel signs are combining marks, not punctuation.
        assert_eq!(normalize_text("क्षत्रिय", None), "क्षत्रिय");
        // Arabic harakat.
        assert_eq!(normalize_text("كَتَبَ", None), "كَتَبَ");
        assert_eq!(normalize_text("日本語のテキスト", None), "日本語のテキスト");
        assert_eq!(normalize_text("ภาษาไทย", None), "ภาษาไทย");
        assert_eq!(
            normalize_text("Українська мова", Some("uk")),
            "українська мова"
        );
    }

    #[test]
    fn invisible_format_characters_are_dropped_and_joiners_kept() {
        assert_eq!(
            normalize_text("co\u{00AD}operate\u{FEFF}", None),
            "cooperate"
        );
        assert_eq!(normalize_text("\u{200F}שלום\u{200E}", None), "שלום");
        assert_eq!(normalize_text("می\u{200C}خواهم", None), "می\u{200C}خواهم");
    }

    #[test]
    fn ukrainian_numbers_are_spelt() {
        assert_eq!(normalize_text("3 коти", Some("uk")), "три коти");
    }
}
