//! CTC forced alignment over an emission matrix, with the semantics of torchaudio's
//! CPU `forced_align`: a Viterbi pass over the `2L + 1` blank-interleaved states of
//! the target, the same windowing of reachable states, the same tie-breaking (staying
//! wins over advancing, advancing over skipping a blank; at the end the last token
//! wins over the trailing blank), and `merge_tokens`' spans.

/// A target that cannot be aligned to its emissions.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AlignError {
    #[error("nothing to align: the target is empty")]
    EmptyTarget,
    #[error(
        "too short: {frames} frames for {tokens} tokens with {repeats} repeats (needs {tokens} + {repeats})"
    )]
    TooShort {
        frames: usize,
        tokens: usize,
        repeats: usize,
    },
    #[error("token {token} is outside the vocabulary of {vocabulary}")]
    TokenOutOfRange { token: u32, vocabulary: usize },
    #[error("emissions of {len} values are not frames of {vocabulary}")]
    BadShape { len: usize, vocabulary: usize },
}

/// The best path: per frame its label (a target token or `blank`) and that label's
/// log-probability in the frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Alignment {
    pub labels: Vec<u32>,
    pub scores: Vec<f32>,
}

/// A run of frames of one target token (torchaudio's `TokenSpan`): frames
/// `start..end`, `score` the mean log-probability over them.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSpan {
    pub token: u32,
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

/// Aligns `targets` to `emissions` (row-major frames × `vocabulary` log-probabilities).
pub fn forced_align(
    emissions: &[f32],
    vocabulary: usize,
    targets: &[u32],
    blank: u32,
) -> Result<Alignment, AlignError> {
    if vocabulary == 0 || !emissions.len().is_multiple_of(vocabulary) {
        return Err(AlignError::BadShape {
            len: emissions.len(),
            vocabulary,
        });
    }
    if let Some(&token) = targets
        .iter()
        .chain([&blank])
        .find(|t| **t as usize >= vocabulary)
    {
        return Err(AlignError::TokenOutOfRange { token, vocabulary });
    }
    let frames = emissions.len() / vocabulary;
    let l = targets.len();
    if l == 0 {
        return Err(AlignError::EmptyTarget);
    }
    let repeats = targets.windows(2).filter(|w| w[0] == w[1]).count();
    if frames < l + repeats {
        return Err(AlignError::TooShort {
            frames,
            tokens: l,
            repeats,
        });
    }
    let emit = |t: usize, label: u32| emissions[t * vocabulary + label as usize];
    let states = 2 * l + 1;
    let label_of = |s: usize| {
        if s.is_multiple_of(2) {
            blank
        } else {
            targets[s / 2]
        }
    };
    let mut alphas = [
        vec![f32::NEG_INFINITY; states],
        vec![f32::NEG_INFINITY; states],
    ];
    // 0 stay, 1 advance from the previous state, 2 skip a blank.
    let mut back = vec![0u8; frames * states];
    let mut start = if frames > l + repeats { 0 } else { 1 };
    let mut end = if states == 1 { 1 } else { 2 };
    for (s, alpha) in alphas[0].iter_mut().enumerate().take(end).skip(start) {
        *alpha = emit(0, label_of(s));
    }
    for t in 1..frames {
        if frames - t <= l + repeats {
            if !start.is_multiple_of(2) && targets[start / 2] != targets[start / 2 + 1] {
                start += 1;
            }
            start += 1;
        }
        if t <= l + repeats {
            if end.is_multiple_of(2) && end < 2 * l && targets[end / 2 - 1] != targets[end / 2] {
                end += 1;
            }
            end += 1;
        }
        // Two rows of alphas, alternating: this frame's and the previous one's.
        let (lo, hi) = alphas.split_at_mut(1);
        let (current, previous) = if t.is_multiple_of(2) {
            (&mut lo[0], &hi[0])
        } else {
            (&mut hi[0], &lo[0])
        };
        current.fill(f32::NEG_INFINITY);
        let mut first = start;
        if start == 0 {
            current[0] = previous[0] + emit(t, blank);
            back[t * states] = 0;
            first += 1;
        }
        for s in first..end {
            let x0 = previous[s];
            let x1 = previous[s - 1];
            let x2 = if !s.is_multiple_of(2) && s != 1 && targets[s / 2] != targets[s / 2 - 1] {
                previous[s - 2]
            } else {
                f32::NEG_INFINITY
            };
            let (best, step) = if x2 > x1 && x2 > x0 {
                (x2, 2)
            } else if x1 > x0 && x1 > x2 {
                (x1, 1)
            } else {
                (x0, 0)
            };
            current[s] = best + emit(t, label_of(s));
            back[t * states + s] = step;
        }
    }
    let last = &alphas[(frames - 1) % 2];
    let mut state = if last[states - 1] > last[states - 2] {
        states - 1
    } else {
        states - 2
    };
    let mut labels = vec![0u32; frames];
    let mut scores = vec![0f32; frames];
    for t in (0..frames).rev() {
        let label = label_of(state);
        labels[t] = label;
        scores[t] = emit(t, label);
        state -= back[t * states + state] as usize;
    }
    Ok(Alignment { labels, scores })
}

/// Runs of equal labels that are not `blank`, as torchaudio's `merge_tokens`.
pub fn merge_tokens(labels: &[u32], scores: &[f32], blank: u32) -> Vec<TokenSpan> {
    let mut spans = Vec::new();
    let mut start = 0;
    for t in 1..=labels.len() {
        if t == labels.len() || labels[t] != labels[start] {
            if labels[start] != blank {
                let run = &scores[start..t];
                spans.push(TokenSpan {
                    token: labels[start],
                    start,
                    end: t,
                    score: run.iter().sum::<f32>() / run.len() as f32,
                });
            }
            start = t;
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log-softmax rows from logits.
    fn log_softmax(rows: &[Vec<f32>]) -> Vec<f32> {
        rows.iter()
            .flat_map(|r| {
                let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let z = r.iter().map(|x| (x - m).exp()).sum::<f32>().ln() + m;
                r.iter().map(move |x| x - z)
            })
            .collect()
    }

    #[test]
    fn a_clear_emission_aligns_each_token_where_it_peaks() {
        // Vocabulary: 0 blank, 1 a, 2 b. Frames: a a blank b b.
        let peak = |k: usize| {
            let mut r = vec![0.0; 3];
            r[k] = 8.0;
            r
        };
        let e = log_softmax(&[peak(1), peak(1), peak(0), peak(2), peak(2)]);
        let a = forced_align(&e, 3, &[1, 2], 0).unwrap();
        assert_eq!(a.labels, vec![1, 1, 0, 2, 2]);
        let spans = merge_tokens(&a.labels, &a.scores, 0);
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].token, spans[0].start, spans[0].end), (1, 0, 2));
        assert_eq!((spans[1].token, spans[1].start, spans[1].end), (2, 3, 5));
        assert!(spans[0].score > -0.01 && spans[0].score <= 0.0);
    }

    #[test]
    fn repeated_tokens_need_a_blank_between_them() {
        let e = log_softmax(&vec![vec![0.0; 3]; 3]);
        // a a in 3 frames: a, blank, a is the only path.
        let a = forced_align(&e, 3, &[1, 1], 0).unwrap();
        assert_eq!(a.labels, vec![1, 0, 1]);
        assert_eq!(merge_tokens(&a.labels, &a.scores, 0).len(), 2);
        assert_eq!(
            forced_align(&e[..6], 3, &[1, 1], 0),
            Err(AlignError::TooShort {
                frames: 2,
                tokens: 2,
                repeats: 1
            })
        );
    }

    #[test]
    fn bad_targets_are_errors_not_panics() {
        let e = log_softmax(&vec![vec![0.0; 3]; 4]);
        assert_eq!(forced_align(&e, 3, &[], 0), Err(AlignError::EmptyTarget));
        assert_eq!(
            forced_align(&e, 3, &[1, 7], 0),
            Err(AlignError::TokenOutOfRange {
                token: 7,
                vocabulary: 3
            })
        );
        assert!(matches!(
            forced_align(&e[..5], 3, &[1], 0),
            Err(AlignError::BadShape { .. })
        ));
        // Exactly as many frames as tokens: one frame each, no blank.
        let a = forced_align(&e[..6], 3, &[1, 2], 0).unwrap();
        assert_eq!(a.labels, vec![1, 2]);
    }
}
