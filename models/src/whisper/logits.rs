//! Arithmetic on one row of decoder logits (`[n_vocab]`, ~52k values for Whisper): the
//! decoder runs it for every beam at every step, so the hot paths avoid allocating and
//! use an exp the compiler can vectorise.

use rand::Rng;
use rand::rngs::StdRng;

/// `ln Σ exp(logits)`; −∞ entries (suppressed tokens) add nothing.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { log_sum_exp_avx2(logits) };
    }
    log_sum_exp_portable(logits)
}

/// The same code compiled for AVX2 + FMA: the loops vectorise 8 wide instead of 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn log_sum_exp_avx2(logits: &[f32]) -> f64 {
    log_sum_exp_portable(logits)
}

#[inline(always)]
fn log_sum_exp_portable(logits: &[f32]) -> f64 {
    const LANES: usize = 16;
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in maxes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    let max = tail
        .iter()
        .chain(&maxes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    if max == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let mut sums = [0f32; LANES];
    for c in logits.chunks_exact(LANES) {
        for (s, &x) in sums.iter_mut().zip(c) {
            *s += exp_approx(x - max);
        }
    }
    let total: f64 = sums.iter().map(|&s| s as f64).sum::<f64>()
        + tail
            .iter()
            .map(|&x| exp_approx(x - max) as f64)
            .sum::<f64>();
    total.ln() + max as f64
}

/// `exp(x)` for `x <= 0` within 2e-7 relative (Cephes' expf polynomial), written
/// without calls or branches so that loops over it vectorise; 0 below −87.
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let below = x < -87.0;
    let x = if below { -87.0 } else { x };
    let shifted = x * LOG2E + ROUND; // k sits in the low mantissa bits
    let k = shifted - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^k from k's bits; wrapping integer ops (no overflow checks) keep it vectorisable.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    if below { 0.0 } else { y * scale }
}

/// The `k` largest entries as `(index, value)`, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in values.iter().enumerate() {
        if v == f32::NEG_INFINITY {
            continue;
        }
        if best.len() < k || v > best[best.len() - 1].1 {
            let pos = best.iter().position(|&(_, b)| v > b).unwrap_or(best.len());
            best.insert(pos, (i as u32, v));
            best.truncate(k);
        }
    }
    best
}

/// Log-probabilities of a whole row (for sampling, which needs them all).
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let lse = log_sum_exp(logits);
    logits.iter().map(|&l| l as f64 - lse).collect()
}

/// The probability of `index` under the softmax of `logits` (0 when out of range).
pub fn softmax_prob(logits: &[f32], index: usize) -> f64 {
    logits
        .get(index)
        .map(|&l| (l as f64 - log_sum_exp(logits)).exp())
        .unwrap_or(0.0)
}

/// Draws an index from the softmax of `scaled` (logits already divided by the
/// temperature).
pub fn sample_softmax(scaled: &[f64], rng: &mut StdRng) -> u32 {
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|&l| (l - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if *w > 0.0 {
            if x < *w {
                return i as u32;
            }
            x -= w;
        }
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn top_k_keeps_the_largest_in_order() {
        let v = [0.1, 3.0, f32::NEG_INFINITY, 2.0, 3.0, -1.0];
        assert_eq!(top_k(&v, 3), vec![(1, 3.0), (4, 3.0), (3, 2.0)]);
    }

    #[test]
    fn log_softmax_sums_to_one() {
        let lp = log_softmax(&[1.0, 2.0, f32::NEG_INFINITY, 0.5]);
        let total: f64 = lp.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(lp[2], f64::NEG_INFINITY);
    }

    #[test]
    fn log_sum_exp_matches_the_exact_sum_on_a_vocabulary_sized_row() {
        // A spread like real logits: most far below the maximum, a few near it, some
        // suppressed.
        let row: Vec<f32> = (0..51_865)
            .map(|i| match i % 1000 {
                0 => f32::NEG_INFINITY,
                r => ((i * 7919) % 4001) as f32 / 100.0 - 30.0 + (r == 3) as u8 as f32 * 25.0,
            })
            .collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let exact = row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        let fast = log_sum_exp(&row);
        assert!((fast - exact).abs() < 1e-5, "{fast} vs {exact}");
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 3]), f64::NEG_INFINITY);
    }

    #[test]
    fn exp_approx_is_close_to_exp_over_its_range() {
        let mut worst = 0f64;
        for i in 0..=87_000 {
            let x = -(i as f32) / 1000.0;
            let (a, e) = (exp_approx(x) as f64, (x as f64).exp());
            worst = worst.max((a - e).abs() / e);
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_approx(-100.0), 0.0);
    }

    #[test]
    fn sampling_never_picks_a_suppressed_token() {
        let mut rng = StdRng::seed_from_u64(7);
        let scaled = [f64::NEG_INFINITY, 0.0, f64::NEG_INFINITY, 0.0];
        for _ in 0..200 {
            let t = sample_softmax(&scaled, &mut rng);
            assert!(t == 1 || t == 3);
        }
    }
}
