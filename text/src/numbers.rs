//! Spelling out numbers written with ASCII digits, for the languages `num2words` covers.
//!
//! Transcripts from ASR models and human references disagree on "3" versus "three"; spelling
//! both out removes that source of spurious word errors. Only languages that `num2words`
//! supports are spelt (English, French with its Belgian and Swiss variants, Ukrainian); for
//! every other language the digits are left as they are, which is still consistent because the
//! reference and the hypothesis go through the same function.

use num2words::{Lang, Num2Words};

/// Longest run of integer digits that is spelt; longer runs (ids, phone numbers without
/// separators) are left as digits. 18 digits always fit in a `u64`.
const MAX_INTEGER_DIGITS: usize = 18;

/// A language whose numbers can be spelt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumberLang {
    English,
    French,
    FrenchBelgium,
    FrenchSwitzerland,
    Ukrainian,
}

impl NumberLang {
    /// Parses a language tag: an ISO 639-1 code ("en"), optionally with a region ("fr-BE",
    /// "fr_CH", "en-US"), case-insensitive; a few ISO 639-3/639-2 codes ("eng", "fra", "fre",
    /// "ukr") are accepted too. Returns `None` for languages `num2words` does not cover.
    pub(crate) fn from_tag(tag: &str) -> Option<Self> {
        let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
        let mut parts = tag.split('-');
        let primary = parts.next().unwrap_or("");
        let region = parts.next().unwrap_or("");
        match primary {
            "en" | "eng" => Some(Self::English),
            "fr" | "fra" | "fre" => Some(match region {
                "be" => Self::FrenchBelgium,
                "ch" => Self::FrenchSwitzerland,
                _ => Self::French,
            }),
            "uk" | "ukr" => Some(Self::Ukrainian),
            _ => None,
        }
    }

    fn num2words_lang(self) -> Lang {
        match self {
            Self::English => Lang::English,
            Self::French => Lang::French,
            Self::FrenchBelgium => Lang::French_BE,
            Self::FrenchSwitzerland => Lang::French_CH,
            Self::Ukrainian => Lang::Ukrainian,
        }
    }

    fn is_french(self) -> bool {
        matches!(
            self,
            Self::French | Self::FrenchBelgium | Self::FrenchSwitzerland
        )
    }

    /// The decimal separator as written in the language.
    fn decimal_separator(self) -> char {
        match self {
            Self::English => '.',
            _ => ',',
        }
    }

    /// The word read for the decimal separator.
    fn decimal_word(self) -> &'static str {
        match self {
            Self::English => "point",
            Self::Ukrainian => "кома",
            _ => "virgule",
        }
    }

    fn cardinal(self, n: u64) -> Option<String> {
        Num2Words::new(n)
            .lang(self.num2words_lang())
            .to_words()
            .ok()
    }

    /// Ordinal words. Only the French "1re" has a feminine form ("première"), which
    /// num2words does not produce, so it is written here.
    fn ordinal(self, n: u64, feminine: bool) -> Option<String> {
        if feminine && n == 1 && self.is_french() {
            return Some("première".to_owned());
        }
        Num2Words::new(n)
            .lang(self.num2words_lang())
            .ordinal()
            .to_words()
            .ok()
    }

    /// Reads digits one by one ("007" → "zero zero seven").
    fn digit_by_digit(self, digits: &[char]) -> Option<String> {
        let words = digits
            .iter()
            .map(|d| self.cardinal(u64::from(d.to_digit(10)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(words.join(" "))
    }

    /// Reads an integer written without leading zeros as a cardinal, one with leading zeros
    /// digit by digit, as such numbers (codes, times, "007") are read aloud.
    fn integer(self, digits: &[char]) -> Option<String> {
        if digits.len() > 1 && digits[0] == '0' {
            return self.digit_by_digit(digits);
        }
        if digits.len() > MAX_INTEGER_DIGITS {
            return None;
        }
        let n: u64 = digits.iter().collect::<String>().parse().ok()?;
        self.cardinal(n)
    }

    /// Reads the digits after the decimal separator: digit by digit in English ("three point
    /// one four"); as a number in French and Ukrainian ("trois virgule quatorze"), unless they
    /// have a leading zero.
    fn fraction(self, digits: &[char]) -> Option<String> {
        match self {
            Self::English => self.digit_by_digit(digits),
            _ => self.integer(digits),
        }
    }

    /// If `suffix` (the lowercase letters right after a number) marks an ordinal, returns
    /// whether the ordinal is feminine.
    fn ordinal_suffix(self, suffix: &str, n: u64) -> Option<bool> {
        match self {
            Self::English => {
                let expected = match (n % 100, n % 10) {
                    (11..=13, _) => "th",
                    (_, 1) => "st",
                    (_, 2) => "nd",
                    (_, 3) => "rd",
                    _ => "th",
                };
                (suffix == expected).then_some(false)
            }
            _ if self.is_french() => match suffix {
                "er" if n == 1 => Some(false),
                "re" | "ère" if n == 1 => Some(true),
                "e" | "ème" | "eme" | "è" if n > 1 => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Replaces every number written with ASCII digits by its words, surrounded by spaces.
///
/// Recognised forms: integers ("42"), English digit grouping ("1,000,000"), decimals with the
/// language's separator ("3.14" in English, "3,14" in French and Ukrainian), and ordinal
/// suffixes ("21st", "1er", "2e", "3ème"). Numbers are read as cardinals, so years come out as
/// "one thousand nine hundred and ninety". Hyphens in the words ("forty-two") are left for the
/// punctuation step. Digits of other scripts are left alone.
pub(crate) fn spell_numbers(text: &str, lang: NumberLang) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        let (integer, after_integer) = scan_integer(&chars, i, lang);
        let mut end = after_integer;

        // Decimal part: separator followed by at least one digit.
        let mut fraction: Option<&[char]> = None;
        if chars.get(end) == Some(&lang.decimal_separator())
            && chars.get(end + 1).is_some_and(char::is_ascii_digit)
        {
            let frac_start = end + 1;
            let mut frac_end = frac_start;
            while chars.get(frac_end).is_some_and(char::is_ascii_digit) {
                frac_end += 1;
            }
            fraction = Some(&chars[frac_start..frac_end]);
            end = frac_end;
        }

        let words = match fraction {
            Some(frac) => lang.integer(&integer).and_then(|int_words| {
                let frac_words = lang.fraction(frac)?;
                Some(format!("{int_words} {} {frac_words}", lang.decimal_word()))
            }),
            None => {
                // Ordinal suffix: the whole run of letters right after the digits.
                let mut suffix_end = end;
                while chars.get(suffix_end).is_some_and(|c| c.is_alphabetic()) {
                    suffix_end += 1;
                }
                let suffix: String = chars[end..suffix_end].iter().collect();
                let ordinal = ordinal_words(lang, &integer, &suffix);
                match ordinal {
                    Some(words) => {
                        end = suffix_end;
                        Some(words)
                    }
                    None => lang.integer(&integer),
                }
            }
        };

        match words {
            Some(words) => {
                out.push(' ');
                out.push_str(&words);
                out.push(' ');
            }
            // Not spellable (too long): keep the original characters.
            None => out.extend(&chars[start..end]),
        }
        i = end;
    }
    out
}

/// The ordinal read for `integer` followed by the letters `suffix`, if they form one.
fn ordinal_words(lang: NumberLang, integer: &[char], suffix: &str) -> Option<String> {
    if suffix.is_empty() || (integer.len() > 1 && integer[0] == '0') {
        return None;
    }
    let n: u64 = integer.iter().collect::<String>().parse().ok()?;
    let feminine = lang.ordinal_suffix(suffix, n)?;
    lang.ordinal(n, feminine)
}

/// Reads the integer part starting at `start`: a run of digits, plus, in English, groups of
/// exactly three digits after commas ("1,000,000") when the first run has one to three digits.
/// Returns the digits without separators and the index after the integer part.
fn scan_integer(chars: &[char], start: usize, lang: NumberLang) -> (Vec<char>, usize) {
    let mut end = start;
    while chars.get(end).is_some_and(char::is_ascii_digit) {
        end += 1;
    }
    let mut digits: Vec<char> = chars[start..end].to_vec();
    if lang == NumberLang::English && digits.len() <= 3 && digits[0] != '0' {
        while chars.get(end) == Some(&',')
            && (1..=3).all(|k| chars.get(end + k).is_some_and(char::is_ascii_digit))
            && !chars.get(end + 4).is_some_and(char::is_ascii_digit)
        {
            digits.extend_from_slice(&chars[end + 1..end + 4]);
            end += 4;
        }
    }
    (digits, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn en(text: &str) -> String {
        spell_numbers(text, NumberLang::English)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn fr(text: &str) -> String {
        spell_numbers(text, NumberLang::French)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn language_tags_with_regions_and_case_are_recognised() {
        assert_eq!(NumberLang::from_tag("EN-us"), Some(NumberLang::English));
        assert_eq!(
            NumberLang::from_tag("fr_BE"),
            Some(NumberLang::FrenchBelgium)
        );
        assert_eq!(
            NumberLang::from_tag("fr-CH"),
            Some(NumberLang::FrenchSwitzerland)
        );
        assert_eq!(NumberLang::from_tag("fr-CA"), Some(NumberLang::French));
        assert_eq!(NumberLang::from_tag("ukr"), Some(NumberLang::Ukrainian));
        assert_eq!(NumberLang::from_tag("de"), None);
        assert_eq!(NumberLang::from_tag(""), None);
    }

    #[test]
    fn english_integers_grouping_and_decimals_are_spelt() {
        assert_eq!(en("3 cats"), "three cats");
        assert_eq!(en("1,000,000"), "one million");
        assert_eq!(en("3.14"), "three point one four");
        assert_eq!(en("1,2,3"), "one , two , three");
    }

    #[test]
    fn english_ordinal_suffixes_become_ordinals() {
        assert_eq!(en("the 21st century"), "the twenty-first century");
        assert_eq!(en("11th 2nd 3rd"), "eleventh second third");
        // A wrong suffix is not an ordinal: the letters stay.
        assert_eq!(en("3st"), "three st");
    }

    #[test]
    fn leading_zeros_are_read_digit_by_digit() {
        assert_eq!(en("007"), "zero zero seven");
    }

    #[test]
    fn digits_glued_to_letters_are_separated() {
        assert_eq!(en("mp3 player"), "mp three player");
    }

    #[test]
    fn very_long_digit_runs_are_left_as_digits() {
        assert_eq!(en("1234567890123456789"), "1234567890123456789");
    }

    #[test]
    fn french_decimals_ordinals_and_regions() {
        assert_eq!(fr("3,14"), "trois virgule quatorze");
        assert_eq!(fr("le 1er mai"), "le premier mai");
        assert_eq!(fr("la 1re fois"), "la première fois");
        assert_eq!(fr("le 2e"), "le deuxième");
        assert_eq!(
            spell_numbers("70", NumberLang::FrenchBelgium).trim(),
            "septante"
        );
    }
}
