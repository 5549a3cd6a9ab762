//! Text prepared for speech synthesis: normalised for reading aloud, split into
//! sentences, and a seeded choice of which sentences are spoken (the span selection of
//! synthetic interleaved speech-text data).

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::numbers::{NumberLang, spell_numbers};

/// `text` as a speech synthesiser should read it: Unicode NFKC, whitespace runs
/// (line breaks included) collapsed to one space, numbers written with digits spelt
/// out where `num2words` covers the language (English, French, Ukrainian; others
/// keep their digits). Case and punctuation stay: they shape the prosody.
pub fn normalize_for_speech(text: &str, lang: Option<&str>) -> String {
    let composed: String = text.nfkc().collect();
    let spelt = match lang.and_then(NumberLang::from_tag) {
        Some(l) => spell_numbers(&composed, l),
        None => composed,
    };
    let spaced = spelt.split_whitespace().collect::<Vec<_>>().join(" ");
    // The speller pads the words it writes with spaces: none before a comma or a
    // full stop (French keeps its space before ! ? ; :, so those are left alone).
    spaced.replace(" .", ".").replace(" ,", ",")
}

/// The sentences of `text` (Unicode sentence boundaries, UAX #29), trimmed, empty
/// ones dropped, in order.
pub fn sentences(text: &str) -> Vec<String> {
    text.split_sentence_bounds()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Which of `n` spans to speak: `round(eta × n)` of them (at least one when `eta` > 0
/// and there is a span), chosen by a shuffle seeded with `seed` and `key` (the
/// document id), so a document's choice never depends on the other documents or on
/// their order.
pub fn spoken_spans(n: usize, eta: f64, seed: u64, key: &str) -> Vec<bool> {
    let mut speak = vec![false; n];
    if n == 0 || eta <= 0.0 {
        return speak;
    }
    let count = ((eta.min(1.0) * n as f64).round() as usize).clamp(1, n);
    let mut state = seed ^ fnv1a(key.as_bytes());
    let mut order: Vec<usize> = (0..n).collect();
    // Fisher–Yates with splitmix64: stable across platforms and crate versions.
    for i in (1..n).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    for &i in &order[..count] {
        speak[i] = true;
    }
    speak
}

/// SpiritLM-style modality runs over `n` words: consecutive runs of `min_words` to
/// `max_words` words (the last may be shorter), alternately spoken and written, the
/// first run's modality and every run's length drawn from a generator seeded with
/// `seed` and `key` (the segment id), so a segment's runs never depend on the others.
/// Each run: its words and whether it is spoken.
pub fn modality_runs(
    n: usize,
    min_words: usize,
    max_words: usize,
    seed: u64,
    key: &str,
) -> Vec<(std::ops::Range<usize>, bool)> {
    let (min_words, max_words) = (min_words.max(1), max_words.max(min_words.max(1)));
    let mut state = seed ^ fnv1a(key.as_bytes());
    let mut speak = splitmix64(&mut state) & 1 == 1;
    let mut runs = Vec::new();
    let mut start = 0;
    while start < n {
        let len =
            min_words + (splitmix64(&mut state) % (max_words - min_words + 1) as u64) as usize;
        let end = (start + len).min(n);
        runs.push((start..end, speak));
        speak = !speak;
        start = end;
    }
    runs
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modality_runs_alternate_cover_every_word_and_follow_the_seed() {
        let runs = modality_runs(23, 2, 5, 7, "seg-1");
        assert_eq!(runs.first().unwrap().0.start, 0);
        assert_eq!(runs.last().unwrap().0.end, 23);
        for pair in runs.windows(2) {
            assert_eq!(pair[0].0.end, pair[1].0.start);
            assert_ne!(pair[0].1, pair[1].1, "modalities alternate");
        }
        for (i, (range, _)) in runs.iter().enumerate() {
            assert!(range.len() <= 5 && (range.len() >= 2 || i + 1 == runs.len()));
        }
        assert_eq!(runs, modality_runs(23, 2, 5, 7, "seg-1"));
        let others: Vec<_> = (0..8)
            .map(|k| modality_runs(23, 2, 5, k, "seg-1"))
            .collect();
        assert!(others.iter().any(|r| *r != runs), "the seed matters");
        assert!(modality_runs(0, 2, 5, 7, "x").is_empty());
    }

    #[test]
    fn speech_text_is_composed_spaced_and_spells_numbers_where_it_can() {
        assert_eq!(
            normalize_for_speech("ﬁrst  line\nhas 3 items.", Some("en")),
            "first line has three items."
        );
        // German: no speller, digits stay; case and punctuation stay.
        assert_eq!(
            normalize_for_speech("Es ist 3 Uhr!", Some("de")),
            "Es ist 3 Uhr!"
        );
        assert_eq!(
            normalize_for_speech("at 8, then 9.", Some("en")),
            "at eight, then nine."
        );
    }

    #[test]
    fn sentences_split_at_sentence_ends_in_several_scripts() {
        assert_eq!(
            sentences("It rains. Does it? Yes!  "),
            ["It rains.", "Does it?", "Yes!"]
        );
        assert_eq!(sentences("你好。今天很好。"), ["你好。", "今天很好。"]);
        assert!(sentences("   ").is_empty());
    }

    #[test]
    fn spoken_spans_follow_the_ratio_and_the_seed_per_document() {
        let a = spoken_spans(10, 0.3, 7, "doc-1");
        assert_eq!(a.iter().filter(|&&s| s).count(), 3);
        assert_eq!(a, spoken_spans(10, 0.3, 7, "doc-1"));
        assert_ne!(
            (0..20)
                .map(|s| spoken_spans(10, 0.3, s, "doc-1"))
                .collect::<Vec<_>>(),
            vec![a.clone(); 20]
        );
        assert_eq!(spoken_spans(1, 0.3, 7, "x"), [true]);
        assert_eq!(spoken_spans(4, 0.0, 7, "x"), [false; 4]);
        assert_eq!(spoken_spans(4, 1.0, 7, "x"), [true; 4]);
        assert!(spoken_spans(0, 0.5, 7, "x").is_empty());
    }
}
