//! Word timestamps by dynamic time warping over the decoder's alignment-head
//! cross-attention, as openai-whisper / CTranslate2 `align()` compute them.

/// Seconds per encoder frame (1500 frames per 30 s).
pub const SECONDS_PER_FRAME: f64 = 0.02;
const MEDIAN_FILTER_WIDTH: usize = 7;

/// The path through `cost` (`n × m`, row-major) from (0,0) to (n−1,m−1) of least
/// total cost, moving down, right or diagonally: `(row, column)` pairs.
pub fn dtw(cost: &[f64], n: usize, m: usize) -> Vec<(usize, usize)> {
    let w = m + 1;
    let mut acc = vec![f64::INFINITY; (n + 1) * w];
    let mut trace = vec![-1i8; (n + 1) * w];
    acc[0] = 0.0;
    for j in 1..=m {
        for i in 1..=n {
            let c0 = acc[(i - 1) * w + j - 1];
            let c1 = acc[(i - 1) * w + j];
            let c2 = acc[i * w + j - 1];
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            acc[i * w + j] = cost[(i - 1) * m + j - 1] + c;
            trace[i * w + j] = t;
        }
    }
    trace[..=m].fill(2);
    for i in 0..=n {
        trace[i * w] = 1;
    }
    let (mut i, mut j) = (n, m);
    let mut path = Vec::with_capacity(n + m);
    while i > 0 || j > 0 {
        // Python's trace can step into row or column -1 at the border; clamp to 0.
        path.push((i.saturating_sub(1), j.saturating_sub(1)));
        match trace[i * w + j] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    path.reverse();
    path
}

/// Median filter of width [`MEDIAN_FILTER_WIDTH`] along each row (reflect padding),
/// numpy-style.
fn median_filter_rows(data: &mut [f64], rows: usize, cols: usize) {
    const WIDTH: usize = MEDIAN_FILTER_WIDTH;
    let pad = WIDTH / 2;
    if cols <= pad {
        return;
    }
    let mut padded = vec![0f64; cols + 2 * pad];
    for r in 0..rows {
        let row = &mut data[r * cols..(r + 1) * cols];
        for (k, p) in padded.iter_mut().enumerate() {
            let i = k as isize - pad as isize;
            let i = if i < 0 {
                (-i) as usize
            } else if i as usize >= cols {
                2 * (cols - 1) - i as usize
            } else {
                i as usize
            };
            *p = row[i];
        }
        for (c, out) in row.iter_mut().enumerate() {
            let mut window = [0f64; WIDTH];
            window.copy_from_slice(&padded[c..c + WIDTH]);
            let (_, median, _) = window.select_nth_unstable_by(pad, f64::total_cmp);
            *out = *median;
        }
    }
}

/// Token→frame path from alignment attention.
///
/// `attn` is `[heads, rows, frames_total]` (softmaxed cross-attention of the teacher-forced
/// pass over `sot_sequence + <|notimestamps|> + text + <|endoftext|>`); `content_frames`
/// is the number of mel frames with audio (encoder frames = half of it); `first_row`
/// is `len(sot_sequence)`. Returns `(text_index, time_index)` pairs for rows
/// `first_row .. rows - 1` (the no-timestamps row and the text tokens).
pub fn token_frame_path(
    attn: &[f32],
    heads: usize,
    rows: usize,
    frames_total: usize,
    content_frames: usize,
    first_row: usize,
) -> Vec<(usize, usize)> {
    let frames = (content_frames / 2).clamp(1, frames_total);
    // Per head: normalise each row over the audio frames, then standardise each frame
    // over the rows, median-filter along time; then average the heads.
    let mut mean = vec![0f64; rows * frames];
    let mut w = vec![0f64; rows * frames];
    for h in 0..heads {
        for r in 0..rows {
            let src = &attn[(h * rows + r) * frames_total..(h * rows + r) * frames_total + frames];
            let sum: f64 = src.iter().map(|&v| v as f64).sum();
            let sum = if sum > 0.0 { sum } else { 1.0 };
            for (o, &v) in w[r * frames..(r + 1) * frames].iter_mut().zip(src) {
                *o = v as f64 / sum;
            }
        }
        for f in 0..frames {
            let mu = (0..rows).map(|r| w[r * frames + f]).sum::<f64>() / rows as f64;
            let var = (0..rows)
                .map(|r| (w[r * frames + f] - mu).powi(2))
                .sum::<f64>()
                / rows as f64;
            let sd = var.sqrt();
            for r in 0..rows {
                let v = &mut w[r * frames + f];
                *v = if sd > 0.0 { (*v - mu) / sd } else { 0.0 };
            }
        }
        median_filter_rows(&mut w, rows, frames);
        for (m, v) in mean.iter_mut().zip(&w) {
            *m += v / heads as f64;
        }
    }
    let last = rows.saturating_sub(1);
    if last <= first_row {
        return Vec::new();
    }
    let n = last - first_row;
    let cost: Vec<f64> = mean[first_row * frames..last * frames]
        .iter()
        .map(|v| -v)
        .collect();
    dtw(&cost, n, frames)
}

/// Start and end time (s) of each word, from the DTW path (row 0 predicts the first
/// text token, the last row predicts `<|endoftext|>`) and each word's token count.
pub fn word_times(path: &[(usize, usize)], word_token_counts: &[usize]) -> Vec<(f64, f64)> {
    // Times at which the path enters a new token row.
    let mut jump_times = Vec::new();
    let mut previous: Option<usize> = None;
    for &(row, frame) in path {
        if previous != Some(row) {
            jump_times.push(frame as f64 * SECONDS_PER_FRAME);
            previous = Some(row);
        }
    }
    let mut boundaries = vec![0usize];
    for &c in word_token_counts {
        boundaries.push(boundaries.last().copied().unwrap_or(0) + c);
    }
    let at = |i: usize| {
        jump_times
            .get(i)
            .or(jump_times.last())
            .copied()
            .unwrap_or(0.0)
    };
    boundaries
        .windows(2)
        .map(|b| (at(b[0]), at(b[1])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtw_follows_the_cheap_diagonal() {
        // 3 tokens over 6 frames; token k is cheap at frames 2k and 2k+1.
        let (n, m) = (3, 6);
        let cost: Vec<f64> = (0..n * m)
            .map(|i| if (i % m) / 2 == i / m { -1.0 } else { 1.0 })
            .collect();
        let path = dtw(&cost, n, m);
        assert_eq!(path.first(), Some(&(0, 0)));
        assert_eq!(path.last(), Some(&(2, 5)));
        assert_eq!(path, vec![(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]);
    }

    #[test]
    fn word_times_start_where_their_first_token_starts() {
        let path = vec![(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5), (3, 6)];
        // Words of 1 and 2 tokens (rows 0; 1-2); row 3 predicts the end of text.
        let times = word_times(&path, &[1, 2]);
        assert_eq!(times[0], (0.0, 0.04));
        assert_eq!(times[1], (0.04, 0.12));
    }

    #[test]
    fn median_filter_removes_spikes() {
        let mut row = vec![0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0];
        median_filter_rows(&mut row, 1, 8);
        assert!(row.iter().all(|&v| v == 0.0));
    }
}
