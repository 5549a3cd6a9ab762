//! Language identification of transcripts.
//!
//! Used to flag transcripts whose language does not match the corpus (wrong subtitles, ASR
//! hallucinations in another language) and to pick the `lang` of [`crate::normalize_text`].

use whatlang::Lang;

/// Detects the language of `text` with whatlang (trigram model, 70 languages, no model files).
///
/// Returns the ISO 639-1 two-letter code ("en", "de", "zh", ...) and whatlang's confidence in
/// `[0, 1]` as a probability. whatlang reports ISO 639-3; every language it knows has a 639-1
/// code, so the mapping below is total (the match is exhaustive, so a whatlang upgrade that
/// adds languages fails to compile until they are mapped). Mandarin (`cmn`) maps to "zh",
/// Iranian Persian (`pes`) to "fa", Norwegian Bokmål (`nob`) to "nb".
///
/// Empty text, or text whatlang cannot classify (only digits, punctuation), gives `None`.
/// Short texts give low confidences; callers should threshold on the probability.
///
/// ```
/// use speechmill_text::text_lang;
/// let (code, p) = text_lang("The quick brown fox jumps over the lazy dog.").unwrap();
/// assert_eq!(code, "en");
/// assert!(p > 0.0 && p <= 1.0);
/// ```
pub fn text_lang(text: &str) -> Option<(String, f64)> {
    if text.trim().is_empty() {
        return None;
    }
    let info = whatlang::detect(text)?;
    Some((iso639_1(info.lang()).to_owned(), info.confidence()))
}

/// ISO 639-1 code of a whatlang language.
pub fn iso639_1(lang: Lang) -> &'static str {
    match lang {
        Lang::Epo => "eo",
        Lang::Eng => "en",
        Lang::Rus => "ru",
        Lang::Cmn => "zh",
        Lang::Spa => "es",
        Lang::Por => "pt",
        Lang::Ita => "it",
        Lang::Ben => "bn",
        Lang::Fra => "fr",
        Lang::Deu => "de",
        Lang::Ukr => "uk",
        Lang::Kat => "ka",
        Lang::Ara => "ar",
        Lang::Hin => "hi",
        Lang::Jpn => "ja",
        Lang::Heb => "he",
        Lang::Yid => "yi",
        Lang::Pol => "pl",
        Lang::Amh => "am",
        Lang::Jav => "jv",
        Lang::Kor => "ko",
        Lang::Nob => "nb",
        Lang::Dan => "da",
        Lang::Swe => "sv",
        Lang::Fin => "fi",
        Lang::Tur => "tr",
        Lang::Nld => "nl",
        Lang::Hun => "hu",
        Lang::Ces => "cs",
        Lang::Ell => "el",
        Lang::Bul => "bg",
        Lang::Bel => "be",
        Lang::Mar => "mr",
        Lang::Kan => "kn",
        Lang::Ron => "ro",
        Lang::Slv => "sl",
        Lang::Hrv => "hr",
        Lang::Srp => "sr",
        Lang::Mkd => "mk",
        Lang::Lit => "lt",
        Lang::Lav => "lv",
        Lang::Est => "et",
        Lang::Tam => "ta",
        Lang::Vie => "vi",
        Lang::Urd => "ur",
        Lang::Tha => "th",
        Lang::Guj => "gu",
        Lang::Uzb => "uz",
        Lang::Pan => "pa",
        Lang::Aze => "az",
        Lang::Ind => "id",
        Lang::Tel => "te",
        Lang::Pes => "fa",
        Lang::Mal => "ml",
        Lang::Ori => "or",
        Lang::Mya => "my",
        Lang::Nep => "ne",
        Lang::Sin => "si",
        Lang::Khm => "km",
        Lang::Tuk => "tk",
        Lang::Aka => "ak",
        Lang::Zul => "zu",
        Lang::Sna => "sn",
        Lang::Afr => "af",
        Lang::Lat => "la",
        Lang::Slk => "sk",
        Lang::Cat => "ca",
        Lang::Tgl => "tl",
        Lang::Hye => "hy",
        Lang::Cym => "cy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_lang(text: &str, want: &str) {
        let (code, p) = text_lang(text).unwrap_or_else(|| panic!("no language for {text:?}"));
        assert_eq!(code, want, "{text:?}");
        assert!(p > 0.0 && p <= 1.0, "{text:?}: probability {p}");
    }

    #[test]
    fn detects_common_languages_with_a_probability() {
        assert_lang(
            "The weather is lovely today and we are going to the park.",
            "en",
        );
        assert_lang(
            "Das Wetter ist heute schön und wir gehen in den Park.",
            "de",
        );
        assert_lang(
            "Il fait beau aujourd'hui et nous allons au parc ensemble.",
            "fr",
        );
        assert_lang(
            "Hoy hace buen tiempo y vamos a ir al parque con los niños.",
            "es",
        );
        assert_lang("Сегодня хорошая погода, и мы идём гулять в парк.", "ru");
        assert_lang("आज मौसम बहुत अच्छा है और हम पार्क जा रहे हैं।", "hi");
        assert_lang("今天天气很好，我们要去公园散步。", "zh");
        assert_lang("الطقس جميل اليوم ونحن ذاهبون إلى الحديقة.", "ar");
    }

    #[test]
    fn empty_or_undetectable_text_has_no_language() {
        assert_eq!(text_lang(""), None);
        assert_eq!(text_lang("   \n"), None);
        assert_eq!(text_lang("12345 !!! ..."), None);
    }

    #[test]
    fn every_whatlang_language_maps_to_a_two_letter_code() {
        let mut seen = std::collections::HashSet::new();
        for &lang in Lang::all() {
            let code = iso639_1(lang);
            assert_eq!(code.len(), 2, "{lang:?}");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase()), "{lang:?}");
            assert!(seen.insert(code), "{code} used twice");
        }
        assert_eq!(seen.len(), 70);
    }
}
