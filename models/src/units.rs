//! Discrete speech units: k-means over feature frames (HuBERT-style units).
//!
//! The frames are any fixed-dimension features (Whisper encoder frames at 50 Hz, say
//! dimension 512), row-major in one `&[f32]` of `n * dim` values.
//!
//! * [`Codebook::fit`] learns `k` centroids: k-means++ seeding from a seeded `StdRng`,
//!   then Lloyd iterations until no assignment changes (or `max_iter`). It is
//!   deterministic: the same frames, `k`, seed and `max_iter` give bit-identical
//!   centroids, whatever the number of cores. Every distance is computed by the same
//!   fixed-order kernel (8 lanes, then a fixed reduction); only independent per-frame
//!   work runs on threads; every sum across frames runs in frame order, in `f64`.
//! * [`Codebook::assign`] maps frames to their nearest centroid (squared L2, ties to the
//!   lower index), [`pool`] lowers the frame rate first (50 Hz to 25 Hz, 12.5 Hz), and
//!   [`dedup`] collapses runs of the same unit.
//! * [`Codebook::to_bytes`] / [`Codebook::from_bytes`] store a codebook in a small
//!   self-describing format; [`Codebook::sha256`] is the hex sha256 of those bytes,
//!   for fingerprinting.
//!
//! Distances are `|c|^2 - 2 x.c` (the `|x|^2` term is the same for every centroid),
//! with the centroid norms computed once per iteration.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// First bytes of [`Codebook::to_bytes`].
pub const CODEBOOK_MAGIC: &[u8; 8] = b"SMUNITS\0";
/// Version of the [`Codebook::to_bytes`] format.
pub const CODEBOOK_VERSION: u32 = 1;
/// Magic (8), version (u32), k (u64), dim (u64); then `k * dim` f32, all little-endian.
const HEADER_LEN: usize = 8 + 4 + 8 + 8;

/// `k` centroids of dimension `dim`, row-major (`centroids[j * dim..(j + 1) * dim]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Codebook {
    pub k: usize,
    pub dim: usize,
    pub centroids: Vec<f32>,
}

impl Codebook {
    /// Fits `k` centroids to `frames` (`n * dim` values): k-means++ initialisation from
    /// `StdRng::seed_from_u64(seed)`, then at most `max_iter` Lloyd iterations (update
    /// the means, reassign), stopping early when no assignment changes. A cluster left
    /// empty is re-seeded from the frame farthest from its centroid (ties to the lower
    /// frame index). Deterministic: same input, same bits.
    ///
    /// Errors: `dim` or `k` zero, `frames.len()` not a multiple of `dim`, a value not
    /// finite, or fewer frames than `k`.
    pub fn fit(
        frames: &[f32],
        dim: usize,
        k: usize,
        seed: u64,
        max_iter: usize,
    ) -> Result<Self, String> {
        Self::fit_with_threads(frames, dim, k, seed, max_iter, threads())
    }

    fn fit_with_threads(
        frames: &[f32],
        dim: usize,
        k: usize,
        seed: u64,
        max_iter: usize,
        threads: usize,
    ) -> Result<Self, String> {
        if dim == 0 {
            return Err("k-means: dim must be at least 1".into());
        }
        if k == 0 {
            return Err("k-means: k must be at least 1".into());
        }
        if !frames.len().is_multiple_of(dim) {
            return Err(format!(
                "k-means: {} values are not a whole number of frames of dimension {dim}",
                frames.len()
            ));
        }
        let n = frames.len() / dim;
        if n < k {
            return Err(format!(
                "k-means: {n} frames are fewer than k = {k} clusters (need at least k frames)"
            ));
        }
        if let Some(i) = frames.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "k-means: frame {} has a value that is not finite ({})",
                i / dim,
                frames[i]
            ));
        }
        let centroids = kmeans_pp(frames, dim, k, seed, threads);
        let centroids = lloyd(frames, dim, k, centroids, max_iter, threads);
        Ok(Codebook { k, dim, centroids })
    }

    /// The nearest centroid (squared L2) of each frame of `frames` (`n * dim` values;
    /// a trailing partial frame is ignored); ties go to the lower index.
    pub fn assign(&self, frames: &[f32]) -> Vec<u32> {
        if self.dim == 0 || self.k == 0 {
            return Vec::new();
        }
        let n = frames.len() / self.dim;
        let frames = &frames[..n * self.dim];
        let norms = row_norms(&self.centroids, self.dim);
        let mut labels = vec![0u32; n];
        let mut scores = vec![0f32; n];
        assign_par(
            frames,
            self.dim,
            &self.centroids,
            &norms,
            &mut labels,
            &mut scores,
            threads(),
        );
        labels
    }

    /// `SMUNITS\0`, version (u32 LE), k (u64 LE), dim (u64 LE), then the `k * dim`
    /// centroids as f32 LE, row-major. [`Codebook::from_bytes`] gives back the same bits.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 4 * self.centroids.len());
        out.extend_from_slice(CODEBOOK_MAGIC);
        out.extend_from_slice(&CODEBOOK_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.k as u64).to_le_bytes());
        out.extend_from_slice(&(self.dim as u64).to_le_bytes());
        for v in &self.centroids {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads [`Codebook::to_bytes`]; errors name what is wrong (magic, version, size).
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() < HEADER_LEN || &b[..8] != CODEBOOK_MAGIC {
            return Err("codebook: not a speechmill codebook (bad magic or too short)".into());
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version != CODEBOOK_VERSION {
            return Err(format!(
                "codebook: version {version} is not supported (expected {CODEBOOK_VERSION})"
            ));
        }
        let k = u64::from_le_bytes(b[12..20].try_into().expect("8 bytes"));
        let dim = u64::from_le_bytes(b[20..28].try_into().expect("8 bytes"));
        let (k, dim) = match (usize::try_from(k), usize::try_from(dim)) {
            (Ok(k), Ok(dim)) if k > 0 && dim > 0 => (k, dim),
            _ => return Err(format!("codebook: invalid shape k = {k}, dim = {dim}")),
        };
        let expected = k
            .checked_mul(dim)
            .and_then(|v| v.checked_mul(4))
            .and_then(|v| v.checked_add(HEADER_LEN));
        if expected != Some(b.len()) {
            return Err(format!(
                "codebook: {} bytes do not hold k = {k} centroids of dimension {dim}",
                b.len()
            ));
        }
        let centroids = b[HEADER_LEN..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok(Codebook { k, dim, centroids })
    }

    /// Hex sha256 of [`Codebook::to_bytes`].
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.to_bytes()))
    }
}

/// Mean-pools `frames` (`n * dim` values) at `from_hz` down to `to_hz`: groups of
/// `from_hz / to_hz` consecutive frames (50 -> 25 pools pairs, 50 -> 12.5 pools 4)
/// become their mean; a trailing partial group is the mean of what there is.
///
/// Errors: `dim` zero, `frames.len()` not a multiple of `dim`, a rate not finite and
/// positive, or `from_hz / to_hz` not a whole number of frames (at least 1).
pub fn pool(frames: &[f32], dim: usize, from_hz: f64, to_hz: f64) -> Result<Vec<f32>, String> {
    if dim == 0 {
        return Err("pool: dim must be at least 1".into());
    }
    if !frames.len().is_multiple_of(dim) {
        return Err(format!(
            "pool: {} values are not a whole number of frames of dimension {dim}",
            frames.len()
        ));
    }
    if !(from_hz.is_finite() && from_hz > 0.0 && to_hz.is_finite() && to_hz > 0.0) {
        return Err(format!(
            "pool: rates must be finite and positive (from {from_hz} Hz to {to_hz} Hz)"
        ));
    }
    let ratio = from_hz / to_hz;
    let group = ratio.round();
    if group < 1.0 || (ratio - group).abs() > 1e-9 * ratio {
        return Err(format!(
            "pool: {to_hz} Hz does not divide {from_hz} Hz into a whole number of frames \
             (ratio {ratio})"
        ));
    }
    let group = group as usize;
    if group == 1 {
        return Ok(frames.to_vec());
    }
    let mut out = Vec::with_capacity(frames.len().div_ceil(group));
    let mut sum = vec![0f64; dim];
    for chunk in frames.chunks(group * dim) {
        sum.iter_mut().for_each(|s| *s = 0.0);
        for frame in chunk.chunks_exact(dim) {
            for (s, &v) in sum.iter_mut().zip(frame) {
                *s += f64::from(v);
            }
        }
        let count = (chunk.len() / dim) as f64;
        out.extend(sum.iter().map(|&s| (s / count) as f32));
    }
    Ok(out)
}

/// Collapses runs of the same unit: `[3, 3, 7, 7, 7, 3]` -> `[3, 7, 3]`.
pub fn dedup(units: &[u32]) -> Vec<u32> {
    let mut out = units.to_vec();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------
// Kernels. Every dot product (and squared distance) sums in the same order: 32 lane
// accumulators over the chunks of 32 values, a fixed reduction of the lanes, then the
// tail in order. On x86_64 the lanes are SSE registers (mul then add, no FMA: the
// same IEEE operations per lane as the portable version, so the same bits); the
// portable version is the reference and the fallback elsewhere.

const LANES: usize = 32;

/// Fixed-order sum of the 32 lanes.
#[inline(always)]
fn reduce(a: &[f32; LANES]) -> f32 {
    let mut h = [0f32; 8];
    for (r, hr) in h.iter_mut().enumerate() {
        *hr = (a[r] + a[r + 8]) + (a[r + 16] + a[r + 24]);
    }
    ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// Portable `x . c` (or `|x - c|^2` when `SUB`), lane by lane.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
#[inline(always)]
fn kernel_portable<const SUB: bool>(x: &[f32], c: &[f32]) -> f32 {
    let (xc, xt) = x.as_chunks::<LANES>();
    let (cc, ct) = c.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (xv, cv) in xc.iter().zip(cc) {
        for ((a, &x), &c) in acc.iter_mut().zip(xv).zip(cv) {
            if SUB {
                let d = x - c;
                *a += d * d;
            } else {
                *a += x * c;
            }
        }
    }
    let mut s = reduce(&acc);
    for (&a, &b) in xt.iter().zip(ct) {
        if SUB {
            let d = a - b;
            s += d * d;
        } else {
            s += a * b;
        }
    }
    s
}

/// SSE `x . c` (or `|x - c|^2` when `SUB`): lane `4q + r` of the portable version is
/// lane `r` of register `q`, with the same operations in the same order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn kernel_sse<const SUB: bool>(x: &[f32], c: &[f32]) -> f32 {
    use std::arch::x86_64::{_mm_add_ps, _mm_loadu_ps, _mm_mul_ps, _mm_setzero_ps};
    use std::arch::x86_64::{_mm_storeu_ps, _mm_sub_ps};
    let (xc, xt) = x.as_chunks::<LANES>();
    let (cc, ct) = c.as_chunks::<LANES>();
    // SAFETY: SSE is part of the x86_64 baseline; every load and store stays within a
    // `[f32; LANES]` (offsets 4q..4q + 4 with q < LANES / 4).
    let mut s = unsafe {
        let mut acc = [_mm_setzero_ps(); LANES / 4];
        for (xv, cv) in xc.iter().zip(cc) {
            for (q, a) in acc.iter_mut().enumerate() {
                let u = _mm_loadu_ps(xv.as_ptr().add(4 * q));
                let v = _mm_loadu_ps(cv.as_ptr().add(4 * q));
                *a = if SUB {
                    let d = _mm_sub_ps(u, v);
                    _mm_add_ps(*a, _mm_mul_ps(d, d))
                } else {
                    _mm_add_ps(*a, _mm_mul_ps(u, v))
                };
            }
        }
        let mut lanes = [0f32; LANES];
        for (q, a) in acc.iter().enumerate() {
            _mm_storeu_ps(lanes.as_mut_ptr().add(4 * q), *a);
        }
        reduce(&lanes)
    };
    for (&a, &b) in xt.iter().zip(ct) {
        if SUB {
            let d = a - b;
            s += d * d;
        } else {
            s += a * b;
        }
    }
    s
}

#[inline(always)]
fn dot(x: &[f32], c: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    return kernel_sse::<false>(x, c);
    #[cfg(not(target_arch = "x86_64"))]
    return kernel_portable::<false>(x, c);
}

/// Plain squared L2 (exact form, non-negative).
#[inline(always)]
fn sq_dist(x: &[f32], c: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    return kernel_sse::<true>(x, c);
    #[cfg(not(target_arch = "x86_64"))]
    return kernel_portable::<true>(x, c);
}

fn row_norms(rows: &[f32], dim: usize) -> Vec<f32> {
    rows.chunks_exact(dim).map(|r| dot(r, r)).collect()
}

/// Frames per block in [`nearest_block`]: a block (16 x 2 KiB at dim 512) stays in L1/L2
/// while every centroid streams past it once.
const BLOCK: usize = 16;

/// Nearest centroid of each frame of `xs` (at most [`BLOCK`] frames): `(index,
/// |c|^2 - 2 x.c)` into `labels` / `scores`, ties to the lower index. Each frame still
/// visits the centroids in ascending order.
#[inline]
fn nearest_block(
    xs: &[f32],
    centroids: &[f32],
    norms: &[f32],
    dim: usize,
    labels: &mut [u32],
    scores: &mut [f32],
) {
    let m = labels.len();
    let mut best = [f32::INFINITY; BLOCK];
    let mut best_j = [0usize; BLOCK];
    for (j, (c, &norm)) in centroids.chunks_exact(dim).zip(norms).enumerate() {
        for (p, x) in xs.chunks_exact(dim).enumerate().take(m) {
            let score = norm - 2.0 * dot(x, c);
            if score < best[p] {
                best[p] = score;
                best_j[p] = j;
            }
        }
    }
    for p in 0..m {
        labels[p] = best_j[p] as u32;
        scores[p] = best[p];
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// Runs `f(first_frame, frames, out_a, out_b)` over contiguous ranges of frames on up
/// to `threads` scoped threads (one range per thread; the work per frame is
/// independent, so the split does not change any result).
fn par_frames<A: Send, B: Send>(
    frames: &[f32],
    dim: usize,
    a: &mut [A],
    b: &mut [B],
    threads: usize,
    f: impl Fn(&[f32], &mut [A], &mut [B]) + Sync,
) {
    let n = a.len();
    let threads = threads.clamp(1, n.max(1));
    // Below ~64k multiply-adds per thread the spawn costs more than it saves.
    if threads == 1 || n * dim < 65_536 {
        f(frames, a, b);
        return;
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        for ((fr, a), b) in frames
            .chunks(per * dim)
            .zip(a.chunks_mut(per))
            .zip(b.chunks_mut(per))
        {
            let f = &f;
            s.spawn(move || f(fr, a, b));
        }
    });
}

fn assign_par(
    frames: &[f32],
    dim: usize,
    centroids: &[f32],
    norms: &[f32],
    labels: &mut [u32],
    scores: &mut [f32],
    threads: usize,
) {
    // Only a few centroids: the per-frame work is too small to be worth threads.
    let threads = if norms.len() < 4 { 1 } else { threads };
    par_frames(frames, dim, labels, scores, threads, |fr, ls, ss| {
        for ((xs, l), s) in fr
            .chunks(BLOCK * dim)
            .zip(ls.chunks_mut(BLOCK))
            .zip(ss.chunks_mut(BLOCK))
        {
            nearest_block(xs, centroids, norms, dim, l, s);
        }
    });
}

/// k-means++ (Arthur & Vassilvitskii): the first centroid is a uniform frame, each next
/// one a frame drawn with probability proportional to its squared distance to the
/// nearest centroid so far (the running sum in `f64`, in frame order). When every frame
/// sits on a centroid already (fewer distinct frames than `k`), the lowest-index frame
/// not yet chosen is taken.
fn kmeans_pp(frames: &[f32], dim: usize, k: usize, seed: u64, threads: usize) -> Vec<f32> {
    let n = frames.len() / dim;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen = vec![false; n];
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    chosen[first] = true;
    centroids.extend_from_slice(&frames[first * dim..(first + 1) * dim]);
    let mut d2 = vec![f32::INFINITY; n];
    let mut unused = vec![(); n];
    for _ in 1..k {
        let c = &centroids[centroids.len() - dim..];
        par_frames(frames, dim, &mut d2, &mut unused, threads, |fr, ds, _| {
            for (x, d) in fr.chunks_exact(dim).zip(ds) {
                let v = sq_dist(x, c);
                if v < *d {
                    *d = v;
                }
            }
        });
        let total: f64 = d2.iter().map(|&d| f64::from(d)).sum();
        let pick = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0f64;
            let mut pick = None;
            let mut last_positive = 0;
            for (i, &d) in d2.iter().enumerate() {
                if d > 0.0 {
                    acc += f64::from(d);
                    last_positive = i;
                    if acc > target {
                        pick = Some(i);
                        break;
                    }
                }
            }
            pick.unwrap_or(last_positive)
        } else {
            chosen.iter().position(|&c| !c).unwrap_or(0)
        };
        chosen[pick] = true;
        centroids.extend_from_slice(&frames[pick * dim..(pick + 1) * dim]);
    }
    centroids
}

/// Lloyd iterations from `centroids`: assign, then up to `max_iter` times update the
/// means (sums in `f64`, frame order) and reassign; stops when no label changes and no
/// cluster had to be re-seeded.
fn lloyd(
    frames: &[f32],
    dim: usize,
    k: usize,
    mut centroids: Vec<f32>,
    max_iter: usize,
    threads: usize,
) -> Vec<f32> {
    let n = frames.len() / dim;
    let mut labels = vec![0u32; n];
    let mut scores = vec![0f32; n];
    let mut norms = row_norms(&centroids, dim);
    assign_par(
        frames,
        dim,
        &centroids,
        &norms,
        &mut labels,
        &mut scores,
        threads,
    );
    let frame_norms = row_norms(frames, dim);
    let mut sums = vec![0f64; k * dim];
    let mut counts = vec![0usize; k];
    let mut new_labels = vec![0u32; n];
    for _ in 0..max_iter {
        sums.iter_mut().for_each(|s| *s = 0.0);
        counts.iter_mut().for_each(|c| *c = 0);
        for (x, &l) in frames.chunks_exact(dim).zip(&labels) {
            let l = l as usize;
            counts[l] += 1;
            for (s, &v) in sums[l * dim..(l + 1) * dim].iter_mut().zip(x) {
                *s += f64::from(v);
            }
        }
        let mut reseeded = false;
        // Distance of each frame to its centroid, for re-seeding empty clusters.
        let mut far: Option<Vec<f32>> = None;
        for j in 0..k {
            let row = &mut centroids[j * dim..(j + 1) * dim];
            if counts[j] > 0 {
                let c = counts[j] as f64;
                for (r, &s) in row.iter_mut().zip(&sums[j * dim..(j + 1) * dim]) {
                    *r = (s / c) as f32;
                }
            } else {
                let far = far.get_or_insert_with(|| {
                    frame_norms
                        .iter()
                        .zip(&scores)
                        .map(|(&xn, &s)| (xn + s).max(0.0))
                        .collect()
                });
                // Farthest frame from its centroid, ties to the lower index; a frame
                // used once is not used again.
                let mut best = 0;
                for (i, &d) in far.iter().enumerate() {
                    if d > far[best] {
                        best = i;
                    }
                }
                far[best] = f32::NEG_INFINITY;
                row.copy_from_slice(&frames[best * dim..(best + 1) * dim]);
                reseeded = true;
            }
        }
        norms = row_norms(&centroids, dim);
        assign_par(
            frames,
            dim,
            &centroids,
            &norms,
            &mut new_labels,
            &mut scores,
            threads,
        );
        let changed = labels.iter().zip(&new_labels).any(|(a, b)| a != b);
        std::mem::swap(&mut labels, &mut new_labels);
        if !changed && !reseeded {
            break;
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `clusters` well-separated Gaussian-ish blobs of `per` frames each; returns the
    /// frames (interleaved across clusters) and each frame's generating cluster.
    fn blobs(clusters: usize, per: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let centers: Vec<f32> = (0..clusters * dim)
            .map(|_| rng.random_range(-20.0f32..20.0))
            .collect();
        let mut frames = Vec::new();
        let mut truth = Vec::new();
        for _ in 0..per {
            for c in 0..clusters {
                for d in 0..dim {
                    frames.push(centers[c * dim + d] + rng.random_range(-0.3f32..0.3));
                }
                truth.push(c);
            }
        }
        (frames, truth)
    }

    /// The labels partition the frames exactly as the generating clusters do.
    fn same_partition(labels: &[u32], truth: &[usize], clusters: usize) {
        let mut map = vec![None; clusters];
        let mut used = std::collections::BTreeSet::new();
        for (&l, &t) in labels.iter().zip(truth) {
            match map[t] {
                None => {
                    assert!(used.insert(l), "unit {l} covers two generating clusters");
                    map[t] = Some(l);
                }
                Some(m) => assert_eq!(m, l, "generating cluster {t} split across units"),
            }
        }
    }

    #[test]
    fn units_recovers_separated_clusters() {
        for (clusters, dim) in [(4, 8), (6, 13), (9, 3)] {
            let (frames, truth) = blobs(clusters, 40, dim, 7);
            let cb = Codebook::fit(&frames, dim, clusters, 1, 50).unwrap();
            assert_eq!(
                (cb.k, cb.dim, cb.centroids.len()),
                (clusters, dim, clusters * dim)
            );
            same_partition(&cb.assign(&frames), &truth, clusters);
        }
    }

    #[test]
    fn units_same_seed_is_bit_identical() {
        let (frames, _) = blobs(5, 60, 17, 3);
        let a = Codebook::fit(&frames, 17, 8, 42, 30).unwrap();
        let b = Codebook::fit(&frames, 17, 8, 42, 30).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(a.sha256(), b.sha256());
    }

    #[test]
    fn units_thread_count_does_not_change_bits() {
        let (frames, _) = blobs(7, 400, 24, 5);
        let one = Codebook::fit_with_threads(&frames, 24, 12, 9, 20, 1).unwrap();
        for t in [2, 3, 8] {
            let many = Codebook::fit_with_threads(&frames, 24, 12, 9, 20, t).unwrap();
            assert_eq!(one.to_bytes(), many.to_bytes(), "threads = {t}");
        }
    }

    #[test]
    fn units_different_seeds_still_recover() {
        let (frames, truth) = blobs(5, 30, 10, 11);
        let mut hashes = std::collections::BTreeSet::new();
        for seed in 0..6 {
            let cb = Codebook::fit(&frames, 10, 5, seed, 50).unwrap();
            same_partition(&cb.assign(&frames), &truth, 5);
            hashes.insert(cb.sha256());
        }
        // Cluster order depends on the seed: some seeds give a different codebook.
        assert!(hashes.len() > 1);
    }

    #[test]
    fn units_rejects_bad_input() {
        let frames = vec![0.0f32; 3 * 4];
        let e = Codebook::fit(&frames, 4, 5, 0, 10).unwrap_err();
        assert!(e.contains("3 frames are fewer than k = 5"), "{e}");
        assert!(
            Codebook::fit(&frames, 5, 1, 0, 10)
                .unwrap_err()
                .contains("whole number")
        );
        assert!(Codebook::fit(&frames, 0, 1, 0, 10).is_err());
        assert!(Codebook::fit(&frames, 4, 0, 0, 10).is_err());
        let mut nan = frames.clone();
        nan[6] = f32::NAN;
        assert!(
            Codebook::fit(&nan, 4, 2, 0, 10)
                .unwrap_err()
                .contains("frame 1")
        );
    }

    #[test]
    fn units_k_equals_frames_and_duplicates() {
        // k == n: every frame its own centroid.
        let frames = [0.0f32, 1.0, 5.0, 9.0];
        let cb = Codebook::fit(&frames, 1, 4, 3, 10).unwrap();
        let mut c = cb.centroids.clone();
        c.sort_by(f32::total_cmp);
        assert_eq!(c, frames);
        // Fewer distinct frames than k: still terminates with k centroids.
        let dup = [1.0f32, 1.0, 1.0, 2.0, 2.0];
        let cb = Codebook::fit(&dup, 1, 3, 0, 10).unwrap();
        assert_eq!(cb.centroids.len(), 3);
        assert!(cb.centroids.iter().all(|&v| v == 1.0 || v == 2.0));
    }

    #[test]
    fn units_empty_cluster_is_reseeded_from_farthest_frame() {
        // Centroid 1 starts far from every frame and gets none: it is re-seeded from
        // the frame farthest from its centroid (10.5, in the cluster around 10).
        let frames = [0.0f32, 0.1, 0.2, 10.0, 10.1, 10.5];
        let c = lloyd(&frames, 1, 3, vec![0.1, 1000.0, 10.0], 10, 1);
        let cb = Codebook {
            k: 3,
            dim: 1,
            centroids: c,
        };
        let labels = cb.assign(&frames);
        let mut used: Vec<u32> = labels.clone();
        used.sort();
        used.dedup();
        assert_eq!(used, [0, 1, 2], "{labels:?} {:?}", cb.centroids);
        assert_eq!(labels[5], 1);
        assert_eq!(cb.centroids[1], 10.5);
    }

    #[test]
    fn units_ties_go_to_lower_index() {
        let cb = Codebook {
            k: 3,
            dim: 1,
            centroids: vec![0.0, 2.0, 2.0],
        };
        assert_eq!(cb.assign(&[1.0, 2.0, 3.0, -1.0]), [0, 1, 1, 0]);
        // Same through the 4-wide kernel (k >= 4) and a dimension with a tail.
        let dim = 11;
        let mut centroids = vec![0.0f32; 6 * dim];
        for j in 0..6 {
            centroids[j * dim] = if j < 2 { 0.0 } else { 4.0 };
        }
        let cb = Codebook {
            k: 6,
            dim,
            centroids,
        };
        let mut mid = vec![0.0f32; dim];
        mid[0] = 2.0;
        let mut far = vec![0.0f32; dim];
        far[0] = 4.0;
        assert_eq!(cb.assign(&[mid, far].concat()), [0, 2]);
    }

    #[test]
    fn units_kernels_match_portable_bits() {
        let mut rng = StdRng::seed_from_u64(1);
        for dim in [1, 7, 31, 32, 33, 100, 512] {
            let v: Vec<f32> = (0..2 * dim).map(|_| rng.random_range(-3.0..3.0)).collect();
            let (x, c) = v.split_at(dim);
            assert_eq!(
                dot(x, c).to_bits(),
                kernel_portable::<false>(x, c).to_bits()
            );
            assert_eq!(
                sq_dist(x, c).to_bits(),
                kernel_portable::<true>(x, c).to_bits()
            );
            let plain: f64 = x.iter().zip(c).map(|(a, b)| f64::from(a * b)).sum();
            assert!((f64::from(dot(x, c)) - plain).abs() < 1e-3 * dim as f64);
        }
    }

    #[test]
    fn units_bytes_round_trip() {
        let cb = Codebook {
            k: 2,
            dim: 3,
            centroids: vec![1.5, -0.0, f32::MIN_POSITIVE, 3.25e-7, f32::MAX, -7.0],
        };
        let bytes = cb.to_bytes();
        assert_eq!(&bytes[..8], b"SMUNITS\0");
        assert_eq!(bytes.len(), 28 + 6 * 4);
        let back = Codebook::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back, cb);
        assert_eq!(cb.sha256().len(), 64);
        assert!(
            Codebook::from_bytes(&bytes[..bytes.len() - 1])
                .unwrap_err()
                .contains("do not hold")
        );
        assert!(
            Codebook::from_bytes(b"NOTUNITS")
                .unwrap_err()
                .contains("magic")
        );
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert!(Codebook::from_bytes(&v2).unwrap_err().contains("version 2"));
        let mut other = cb.clone();
        other.centroids[0] = 1.0;
        assert_ne!(other.sha256(), cb.sha256());
    }

    #[test]
    fn units_pool_groups_frames() {
        // 5 frames of dim 2 at 50 Hz.
        let f: Vec<f32> = (0..10).map(|v| v as f32).collect();
        assert_eq!(
            pool(&f, 2, 50.0, 25.0).unwrap(),
            [1.0, 2.0, 5.0, 6.0, 8.0, 9.0] // (0,2)(4,6) pairs, last frame alone
        );
        assert_eq!(pool(&f, 2, 50.0, 12.5).unwrap(), [3.0, 4.0, 8.0, 9.0]);
        assert_eq!(pool(&f, 2, 50.0, 50.0).unwrap(), f);
        assert!(pool(&[], 2, 50.0, 25.0).unwrap().is_empty());
        assert!(
            pool(&f, 2, 50.0, 30.0)
                .unwrap_err()
                .contains("whole number")
        );
        assert!(pool(&f, 2, 25.0, 50.0).is_err());
        assert!(pool(&f, 3, 50.0, 25.0).is_err());
        assert!(pool(&f, 2, 50.0, 0.0).is_err());
    }

    #[test]
    fn units_dedup_collapses_runs() {
        assert_eq!(dedup(&[3, 3, 7, 7, 7, 3, 1, 1]), [3, 7, 3, 1]);
        assert_eq!(dedup(&[]), Vec::<u32>::new());
        assert_eq!(dedup(&[5]), [5]);
    }

    /// `cargo test -p speechmill-models --lib units_bench -- --ignored --nocapture`
    #[test]
    #[ignore = "timing only"]
    fn units_bench_fit_k500_dim512() {
        let (n, dim, k) = (20_000, 512, 500);
        let mut rng = StdRng::seed_from_u64(0);
        let frames: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let t = std::time::Instant::now();
        let init = kmeans_pp(&frames, dim, k, 0, threads());
        eprintln!("k-means++ init: {:?}", t.elapsed());
        assert_eq!(init.len(), k * dim);
        let t = std::time::Instant::now();
        let cb = Codebook::fit(&frames, dim, k, 0, 10).unwrap();
        let fit = t.elapsed();
        let t = std::time::Instant::now();
        let labels = cb.assign(&frames);
        eprintln!(
            "fit k={k} dim={dim} n={n} 10 iter: {fit:?}; assign: {:?}; threads {}",
            t.elapsed(),
            threads()
        );
        assert_eq!(labels.len(), n);
    }
}
