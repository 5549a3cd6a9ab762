//! Speaking rate of a transcript over its audio duration.
//!
//! Characters per second flags misaligned pairs cheaply: a segment whose transcript is far too
//! long or too short for its audio is usually cut wrongly or transcribed from something else.

use crate::normalize::normalize_text;

/// Characters per second of `text` spoken over `duration_s` seconds.
///
/// The text is normalised with [`normalize_text`]`(text, None)` (so punctuation does not count
/// and digits stay digits), and characters are Unicode scalar values excluding spaces;
/// combining marks count as characters. Empty text gives `Some(0.0)`. A duration that is not
/// finite or not positive gives `None`.
///
/// ```
/// use speechmill_text::chars_per_sec;
/// assert_eq!(chars_per_sec("Hello, world!", 2.0), Some(5.0));
/// ```
pub fn chars_per_sec(text: &str, duration_s: f64) -> Option<f64> {
    if !duration_s.is_finite() || duration_s <= 0.0 {
        return None;
    }
    let chars = normalize_text(text, None)
        .chars()
        .filter(|&c| c != ' ')
        .count();
    Some(chars as f64 / duration_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_normalized_characters_without_spaces() {
        assert_eq!(chars_per_sec("Hello, world!", 2.0), Some(5.0));
        assert_eq!(chars_per_sec("  a   b  ", 1.0), Some(2.0));
        assert_eq!(chars_per_sec("你好世界", 2.0), Some(2.0));
    }

    #[test]
    fn empty_text_is_zero_per_second() {
        assert_eq!(chars_per_sec("", 3.0), Some(0.0));
        assert_eq!(chars_per_sec("?!", 3.0), Some(0.0));
    }

    #[test]
    fn non_positive_or_non_finite_duration_is_none() {
        assert_eq!(chars_per_sec("abc", 0.0), None);
        assert_eq!(chars_per_sec("abc", -0.0), None);
        assert_eq!(chars_per_sec("abc", -1.0), None);
        assert_eq!(chars_per_sec("abc", f64::NAN), None);
        assert_eq!(chars_per_sec("abc", f64::INFINITY), None);
    }

    #[test]
    fn tiny_durations_give_large_but_finite_rates() {
        let rate = chars_per_sec("abc", 1e-3).unwrap();
        assert!((rate - 3000.0).abs() < 1e-6);
    }
}
