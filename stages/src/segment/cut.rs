//! Cut & merge: from Silero VAD speech probabilities (one per 512-sample chunk at
//! 16 kHz) to segments of at most `max_segment` samples. Pure functions, no model.
//!
//! The steps follow WhisperX's "VAD cut & merge" (Bain et al. 2023) on top of Silero's
//! `get_speech_timestamps`:
//!
//! 1. [`speech_regions`]: hysteresis over the probabilities like Silero's
//!    `get_speech_timestamps` — a region starts at the first chunk with probability
//!    ≥ `threshold` and ends where the probability first fell below `neg_threshold`,
//!    once it has stayed out of speech (no chunk back ≥ `threshold`) for at least
//!    `min_silence` samples, checked at chunks below `neg_threshold`; a region open
//!    at the end of the audio ends there. Regions no longer than `min_speech`, or
//!    shorter than one chunk, are dropped.
//! 2. [`split_long`]: a region longer than `max_segment − 2·pad` is cut at the chunk of
//!    least speech probability in the second half of the allowed span (WhisperX's
//!    min-cut in its `Binarize`), repeatedly, so every piece fits once padded.
//! 3. [`pad`]: each region grows by `pad` on both sides, clamped to the audio; where
//!    two regions are closer than `2·pad` the gap is shared half and half (Silero's
//!    rule), so regions never overlap. Pieces of a split touch and get no padding at
//!    the cut.
//! 4. [`merge`]: neighbouring regions are merged greedily into segments of at most
//!    `max_segment` samples (WhisperX's `merge_chunks`), optionally only across gaps of
//!    at most `max_gap` samples. A segment spans from its first region's start to its
//!    last region's end, gaps included.
//!
//! Every segment is at most `max_segment` samples long, within `[0, len)`, and the
//! segments are in order and do not overlap.

/// Samples per VAD chunk (Silero at 16 kHz).
pub const CHUNK: usize = 512;

/// Cut & merge parameters, in samples (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CutParams {
    /// A chunk with probability ≥ this is speech.
    pub threshold: f32,
    /// While in speech, a chunk below this starts a silence.
    pub neg_threshold: f32,
    /// Regions of at most this many samples are dropped.
    pub min_speech: usize,
    /// A silence must last this many samples to end a region.
    pub min_silence: usize,
    /// Padding added on each side of a region.
    pub pad: usize,
    /// Longest segment; must exceed `2·pad + CHUNK`.
    pub max_segment: usize,
    /// Regions further apart than this are never merged (`None`: any gap).
    pub max_gap: Option<usize>,
}

/// A span of samples `[start, end)` and how much of it is detected speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: usize,
    pub end: usize,
    /// Samples of detected speech inside (before padding).
    pub speech: usize,
}

impl Region {
    fn new(start: usize, end: usize) -> Self {
        Region {
            start,
            end,
            speech: end - start,
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A segment: samples `[start, end)`, the speech inside, and the mean speech
/// probability of the chunks it overlaps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub start: usize,
    pub end: usize,
    pub speech: usize,
    pub speech_prob: f32,
}

/// The segments of a source of `len` samples whose chunk probabilities are `probs`
/// (chunk `i` covers samples `i·512 .. (i+1)·512`).
pub fn cut(probs: &[f32], len: usize, p: &CutParams) -> Vec<Segment> {
    let regions = speech_regions(probs, len, p);
    let regions = split_long(&regions, probs, p.max_segment.saturating_sub(2 * p.pad));
    let regions = pad(&regions, len, p.pad);
    merge(&regions, p.max_segment, p.max_gap)
        .into_iter()
        .map(|r| Segment {
            start: r.start,
            end: r.end,
            speech: r.speech,
            speech_prob: mean_prob(probs, r.start, r.end),
        })
        .collect()
}

/// Step 1: speech regions by hysteresis (Silero's `get_speech_timestamps` without
/// its padding and its own max-length handling).
pub fn speech_regions(probs: &[f32], len: usize, p: &CutParams) -> Vec<Region> {
    let mut regions = Vec::new();
    let mut start: Option<usize> = None;
    let mut silence_from: Option<usize> = None;
    let close = |s: usize, e: usize, regions: &mut Vec<Region>| {
        // At least one chunk (the VAD's resolution), and longer than min_speech.
        let e = e.min(len);
        if e >= s + CHUNK && e - s > p.min_speech {
            regions.push(Region::new(s, e));
        }
    };
    for (i, &prob) in probs.iter().enumerate() {
        let at = i * CHUNK;
        if at >= len {
            break;
        }
        if prob >= p.threshold {
            silence_from = None;
            start.get_or_insert(at);
            continue;
        }
        if let Some(s) = start
            && prob < p.neg_threshold
        {
            let from = *silence_from.get_or_insert(at);
            if at - from >= p.min_silence {
                close(s, from, &mut regions);
                start = None;
                silence_from = None;
            }
        }
    }
    if let Some(s) = start {
        close(s, len, &mut regions);
    }
    regions
}

/// Step 2: cuts every region longer than `limit` samples at the chunk of least
/// speech probability between `limit/2` and `limit` from the region's (or the last
/// piece's) start; the cut is at that chunk's middle. Pieces touch.
pub fn split_long(regions: &[Region], probs: &[f32], limit: usize) -> Vec<Region> {
    let limit = limit.max(CHUNK);
    let mut out = Vec::with_capacity(regions.len());
    for r in regions {
        let mut start = r.start;
        while r.end - start > limit {
            let lo = start + limit / 2;
            let hi = start + limit;
            // Chunks whose middle lies in [lo, hi]; the first of least probability.
            let first = lo.saturating_sub(CHUNK / 2).div_ceil(CHUNK);
            let mut best: Option<(usize, f32)> = None;
            let mut k = first;
            while k * CHUNK + CHUNK / 2 <= hi {
                let prob = probs.get(k).copied().unwrap_or(0.0);
                if best.is_none_or(|(_, b)| prob < b) {
                    best = Some((k, prob));
                }
                k += 1;
            }
            let cut = match best {
                Some((k, _)) => k * CHUNK + CHUNK / 2,
                None => hi,
            }
            .clamp(start + 1, hi);
            out.push(Region::new(start, cut));
            start = cut;
        }
        out.push(Region::new(start, r.end));
    }
    out
}

/// Step 3: pads regions by `pad` samples on each side within `[0, len)`, sharing
/// gaps narrower than `2·pad` half and half.
pub fn pad(regions: &[Region], len: usize, pad: usize) -> Vec<Region> {
    let mut out: Vec<Region> = regions.to_vec();
    for i in 0..out.len() {
        if i == 0 {
            out[i].start = out[i].start.saturating_sub(pad);
        }
        if i + 1 < out.len() {
            let gap = out[i + 1].start.saturating_sub(out[i].end);
            let grow = if gap < 2 * pad { gap / 2 } else { pad };
            out[i].end += grow;
            out[i + 1].start -= if gap < 2 * pad { gap - gap / 2 } else { pad };
        } else {
            out[i].end = (out[i].end + pad).min(len);
        }
    }
    out
}

/// Step 4: merges neighbours greedily while the merged span stays within
/// `max_segment` samples (and, with `max_gap`, the gap to the next region is at most
/// that). Regions must be in order, non-overlapping and each at most `max_segment`.
pub fn merge(regions: &[Region], max_segment: usize, max_gap: Option<usize>) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for r in regions {
        match out.last_mut() {
            Some(cur)
                if r.end - cur.start <= max_segment
                    && max_gap.is_none_or(|g| r.start - cur.end <= g) =>
            {
                cur.end = r.end;
                cur.speech += r.speech;
            }
            _ => out.push(*r),
        }
    }
    out
}

/// Mean probability of the chunks overlapping samples `[start, end)`.
pub fn mean_prob(probs: &[f32], start: usize, end: usize) -> f32 {
    if end <= start || probs.is_empty() {
        return 0.0;
    }
    let first = (start / CHUNK).min(probs.len() - 1);
    let last = ((end - 1) / CHUNK).min(probs.len() - 1);
    let chunk = &probs[first..=last];
    chunk.iter().map(|&p| p as f64).sum::<f64>() as f32 / chunk.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SR: usize = 16_000;

    fn params() -> CutParams {
        CutParams {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_speech: SR / 4,
            min_silence: SR / 10,
            pad: SR / 5,
            max_segment: 30 * SR,
            max_gap: None,
        }
    }

    /// Probabilities for `spans` of (seconds, probability), chunk by chunk.
    fn probs_of(spans: &[(f64, f32)]) -> (Vec<f32>, usize) {
        let mut probs = Vec::new();
        let mut len = 0usize;
        for &(secs, p) in spans {
            let n = (secs * SR as f64) as usize;
            len += n;
            while probs.len() * CHUNK < len {
                probs.push(p);
            }
        }
        (probs, len)
    }

    fn secs(samples: usize) -> f64 {
        samples as f64 / SR as f64
    }

    #[test]
    fn regions_follow_hysteresis_and_min_silence() {
        let p = params();
        // 1 s silence, 2 s speech, 0.5 s at 0.4 (between the thresholds: still speech),
        // 1 s speech, 64 ms dip (shorter than min_silence: bridged), 1 s speech, silence.
        let (probs, len) = probs_of(&[
            (1.0, 0.0),
            (2.0, 0.9),
            (0.5, 0.4),
            (1.0, 0.9),
            (0.064, 0.1),
            (1.0, 0.9),
            (2.0, 0.02),
        ]);
        let r = speech_regions(&probs, len, &p);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!((secs(r[0].start) - 1.0).abs() < 0.04, "{r:?}");
        assert!((secs(r[0].end) - 5.564).abs() < 0.04, "{r:?}");
    }

    #[test]
    fn a_silence_at_least_min_silence_ends_a_region() {
        let p = params();
        let (probs, len) = probs_of(&[(1.0, 0.9), (0.3, 0.1), (1.0, 0.9)]);
        let r = speech_regions(&probs, len, &p);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!((secs(r[0].end) - 1.0).abs() < 0.04);
        assert!((secs(r[1].start) - 1.3).abs() < 0.04);
        // Between the thresholds after a drop below neg_threshold: still silence, and
        // the next chunk below neg_threshold ends the region where the silence began.
        let (probs, len) = probs_of(&[
            (1.0, 0.9),
            (0.05, 0.1),
            (0.3, 0.45),
            (0.05, 0.1),
            (1.0, 0.9),
        ]);
        let r = speech_regions(&probs, len, &p);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!((secs(r[0].end) - 1.0).abs() < 0.04, "{r:?}");
        // Without that chunk (Silero's rule) the region goes on.
        let (probs, len) = probs_of(&[(1.0, 0.9), (0.05, 0.1), (0.3, 0.45), (1.0, 0.9)]);
        assert_eq!(speech_regions(&probs, len, &p).len(), 1);
    }

    #[test]
    fn tiny_regions_are_dropped() {
        let p = params();
        // 0.2 s blip (< min_speech 0.25 s), then a 1 s region.
        let (probs, len) = probs_of(&[(1.0, 0.0), (0.2, 0.9), (1.0, 0.0), (1.0, 0.9), (1.0, 0.0)]);
        let r = speech_regions(&probs, len, &p);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!((secs(r[0].start) - 2.2).abs() < 0.04);
        let segs = cut(&probs, len, &p);
        assert_eq!(segs.len(), 1);
        // Nothing above the threshold: nothing at all.
        let (probs, len) = probs_of(&[(5.0, 0.45)]);
        assert!(cut(&probs, len, &p).is_empty());
        assert!(cut(&[], 0, &p).is_empty());
    }

    #[test]
    fn padding_grows_regions_and_shares_narrow_gaps() {
        let p = params();
        let pad_s = secs(p.pad);
        let (probs, len) = probs_of(&[(1.0, 0.0), (1.0, 0.9), (2.0, 0.0), (1.0, 0.9), (1.0, 0.0)]);
        let regions = speech_regions(&probs, len, &p);
        let padded = pad(&regions, len, p.pad);
        assert_eq!(padded.len(), 2);
        for (a, b) in regions.iter().zip(&padded) {
            assert_eq!(b.start, a.start - p.pad);
            assert_eq!(b.end, a.end + p.pad);
            assert_eq!(b.speech, a.speech);
        }
        // Clamped to the audio at both ends.
        let (probs, len) = probs_of(&[(1.0, 0.9), (0.1, 0.0)]);
        let padded = pad(&speech_regions(&probs, len, &p), len, p.pad);
        assert_eq!(padded[0].start, 0);
        assert_eq!(padded[0].end, len);
        // A gap narrower than 2·pad is split between the neighbours.
        let regions = [
            Region::new(SR, 2 * SR),
            Region::new(2 * SR + SR / 10, 3 * SR),
        ];
        let padded = pad(&regions, 4 * SR, p.pad);
        assert_eq!(padded[0].end, padded[1].start);
        assert_eq!(padded[0].end, 2 * SR + SR / 20);
        assert!((secs(padded[0].start) - (1.0 - pad_s)).abs() < 1e-9);
    }

    #[test]
    fn neighbours_merge_up_to_max_segment() {
        let p = params();
        // Ten 2 s utterances 1 s apart: 29.4 s with padding → one segment up to 30 s.
        let mut spans = vec![(1.0, 0.0)];
        for _ in 0..10 {
            spans.push((2.0, 0.9));
            spans.push((1.0, 0.0));
        }
        let (probs, len) = probs_of(&spans);
        let segs = cut(&probs, len, &p);
        assert_eq!(segs.len(), 1, "{segs:?}");
        assert!(secs(segs[0].end - segs[0].start) <= 30.0);
        assert!((secs(segs[0].speech) - 20.0).abs() < 0.1, "{segs:?}");
        // Twenty-five of them: greedy segments of ten, ten and five utterances.
        let mut spans = vec![(1.0, 0.0)];
        for _ in 0..25 {
            spans.push((2.0, 0.9));
            spans.push((1.0, 0.0));
        }
        let (probs, len) = probs_of(&spans);
        let segs = cut(&probs, len, &p);
        assert_eq!(segs.len(), 3, "{segs:?}");
        assert!(segs.iter().all(|s| s.end - s.start <= p.max_segment));
        // Greedy: a segment takes as many utterances as fit in 30 s: ten at a 3 s
        // pitch span 9·3 + 2 + 2·0.2 = 29.4 s; an eleventh would make 32.4 s.
        assert!(
            (secs(segs[0].end - segs[0].start) - 29.4).abs() < 0.1,
            "{segs:?}"
        );
        assert!((secs(segs[2].speech) - 10.0).abs() < 0.1, "{segs:?}");
        // With max_gap below the gaps nothing merges.
        let p = CutParams {
            max_gap: Some(SR / 2),
            ..params()
        };
        assert_eq!(cut(&probs, len, &p).len(), 25);
    }

    #[test]
    fn a_long_region_splits_at_its_least_speech_point() {
        let p = params();
        // 70 s of continuous speech with dips at 20 s (0.55) and 24 s (0.51).
        let (mut probs, len) = probs_of(&[(70.0, 0.95)]);
        let dip_a = 20 * SR / CHUNK;
        let dip_b = 24 * SR / CHUNK;
        probs[dip_a] = 0.55;
        probs[dip_b] = 0.51;
        let regions = speech_regions(&probs, len, &p);
        assert_eq!(regions.len(), 1);
        let limit = p.max_segment - 2 * p.pad;
        let pieces = split_long(&regions, &probs, limit);
        assert!(pieces.len() >= 3, "{pieces:?}");
        assert_eq!(
            pieces[0].end,
            dip_b * CHUNK + CHUNK / 2,
            "cut at the lowest dip"
        );
        for w in pieces.windows(2) {
            assert_eq!(w[0].end, w[1].start, "pieces touch");
        }
        assert!(pieces.iter().all(|r| r.len() <= limit && !r.is_empty()));
        let segs = cut(&probs, len, &p);
        assert!(
            segs.iter().all(|s| s.end - s.start <= p.max_segment),
            "{segs:?}"
        );
        assert_eq!(segs.first().unwrap().start, 0);
        assert_eq!(segs.last().unwrap().end, len);
        let covered: usize = segs.iter().map(|s| s.end - s.start).sum();
        assert_eq!(covered, len, "a split loses nothing");
    }

    #[test]
    fn mean_prob_is_over_overlapping_chunks() {
        let probs = [0.0, 1.0, 0.5];
        assert_eq!(mean_prob(&probs, 0, CHUNK), 0.0);
        assert_eq!(mean_prob(&probs, CHUNK, 2 * CHUNK + 1), 0.75);
        assert_eq!(mean_prob(&probs, 10, 10), 0.0);
    }

    proptest! {
        #[test]
        fn segments_are_ordered_disjoint_and_bounded(
            raw in proptest::collection::vec(0u8..=10, 0..4000),
            tail in 0usize..CHUNK,
            max_s in 1u32..40,
            pad_ms in 0u32..400,
            min_speech_ms in 0u32..500,
            min_silence_ms in 0u32..2000,
            gap in proptest::option::of(0usize..5 * SR),
        ) {
            // Runs of values make speech-like stretches.
            let probs: Vec<f32> = raw.iter().map(|&v| v as f32 / 10.0).collect();
            let len = (probs.len() * CHUNK).saturating_sub(if probs.is_empty() { 0 } else { tail });
            let pad = pad_ms as usize * SR / 1000;
            let p = CutParams {
                threshold: 0.5,
                neg_threshold: 0.35,
                min_speech: min_speech_ms as usize * SR / 1000,
                min_silence: min_silence_ms as usize * SR / 1000,
                pad,
                max_segment: max_s as usize * SR + 2 * pad + CHUNK,
                max_gap: gap,
            };
            let segs = cut(&probs, len, &p);
            let mut prev_end = 0;
            for s in &segs {
                prop_assert!(s.start < s.end, "{s:?}");
                prop_assert!(s.start >= prev_end, "overlap: {segs:?}");
                prop_assert!(s.end <= len);
                prop_assert!(s.end - s.start <= p.max_segment, "{s:?} > {}", p.max_segment);
                prop_assert!(s.speech <= s.end - s.start);
                prop_assert!((0.0..=1.0).contains(&s.speech_prob));
                prev_end = s.end;
            }
            // Every detected speech sample lies in some segment.
            for r in speech_regions(&probs, len, &p) {
                let inside: usize = segs
                    .iter()
                    .map(|s| s.end.min(r.end).saturating_sub(s.start.max(r.start)))
                    .sum();
                prop_assert_eq!(inside, r.len(), "region {:?} not covered by {:?}", r, segs);
            }
        }
    }
}
