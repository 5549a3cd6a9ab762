//! The converted Whisper graphs (`encoder.onnx`, `decoder.onnx` / `decoder_int8.onnx`)
//! as ONNX Runtime sessions, and the tensors that flow between them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::{DynValue, Tensor, TensorRef, TensorValueType};

use super::config::WhisperConfig;
use super::profile::{Profile, add_elapsed, count, timed};
use crate::runtime::{
    ModelError, Result, SessionConfig, SharedWeights, create_session, create_session_sharing,
    ort_error,
};

/// Encoder output for a batch of windows: `cross_k` `[L, W, H, S, dh]` and
/// `cross_v` `[L, W, H, dh, S]`.
#[derive(Debug)]
pub struct CrossKv {
    pub batch: usize,
    k: CrossData,
    v: CrossData,
}

/// Where a [`CrossKv`]'s values live: the encoder's own output tensor (not copied:
/// a window of base is 37 MB), or ours (a gathered or selected batch).
#[derive(Debug)]
enum CrossData {
    Runtime(Tensor<f32>),
    Owned(Vec<f32>),
}

impl CrossData {
    fn values(&self) -> &[f32] {
        match self {
            CrossData::Runtime(t) => t.extract_tensor().1,
            CrossData::Owned(v) => v,
        }
    }
}

impl CrossKv {
    /// `batch` windows of keys and values laid out as the encoder writes them.
    pub fn new(batch: usize, k: Vec<f32>, v: Vec<f32>) -> Self {
        CrossKv {
            batch,
            k: CrossData::Owned(k),
            v: CrossData::Owned(v),
        }
    }

    /// `[L, W, H, S, dh]`, row-major.
    pub fn k(&self) -> &[f32] {
        self.k.values()
    }

    /// `[L, W, H, dh, S]`, row-major.
    pub fn v(&self) -> &[f32] {
        self.v.values()
    }

    /// All of the windows, borrowed.
    pub fn view(&self) -> CrossView<'_> {
        CrossView {
            k: self.k(),
            v: self.v(),
            stride: self.batch,
            first: 0,
            batch: self.batch,
        }
    }

    /// Window `w` alone, borrowed (no copy: each layer's part of it is contiguous).
    pub fn window(&self, w: usize) -> CrossView<'_> {
        assert!(w < self.batch, "window {w} of a batch of {}", self.batch);
        CrossView {
            first: w,
            batch: 1,
            ..self.view()
        }
    }
}

/// Consecutive windows `first .. first + batch` of a [`CrossKv`] of `stride` windows,
/// as the decoder reads them (one contiguous slice per layer).
#[derive(Debug, Clone, Copy)]
pub struct CrossView<'a> {
    k: &'a [f32],
    v: &'a [f32],
    stride: usize,
    first: usize,
    pub batch: usize,
}

impl<'a> CrossView<'a> {
    /// Each layer's keys and values of these windows, `row` values per window.
    fn layers(self, row: usize) -> impl Iterator<Item = (&'a [f32], &'a [f32])> {
        let layer = self.stride * row;
        let span = self.first * row..(self.first + self.batch) * row;
        self.k
            .chunks_exact(layer)
            .zip(self.v.chunks_exact(layer))
            .map(move |(k, v)| (&k[span.clone()], &v[span.clone()]))
    }
}

/// The decoder's self-attention cache: per layer, keys and values `[B, H, P, dh]`,
/// held as the runtime's own output tensors so that a step feeds the previous step's
/// outputs back without copying them.
#[derive(Debug)]
pub struct KvCache {
    pub batch: usize,
    pub past: usize,
    /// `k_0, v_0, k_1, v_1, …`; empty while `past` is 0.
    layers: Vec<DynValue>,
}

impl KvCache {
    /// The cache before the first token of `batch` rows.
    pub fn empty(batch: usize) -> Self {
        KvCache {
            batch,
            past: 0,
            layers: Vec::new(),
        }
    }
}

/// One decoder call's results.
pub struct DecoderOutput {
    /// `[B, T, V]`, the runtime's own output (not copied: a teacher-forced pass's
    /// logits are tens of MB).
    logits: Tensor<f32>,
    /// The cache extended by this call's tokens, rows in input order.
    pub cache: KvCache,
    /// `[B, alignment heads, T, S]`
    pub alignment: Vec<f32>,
}

impl DecoderOutput {
    /// `[B, T, V]`, row-major.
    pub fn logits(&self) -> &[f32] {
        self.logits.extract_tensor().1
    }

    /// `[B, T, V]`, row-major, to adjust in place.
    pub fn logits_mut(&mut self) -> &mut [f32] {
        self.logits.extract_tensor_mut().1
    }
}

pub struct WhisperSessions {
    pub config: WhisperConfig,
    encoder: Mutex<Session>,
    /// Sessions of the same decoder graph, one per thread that decodes at a time
    /// (ort runs a session from one thread at a time).
    decoders: Vec<Mutex<Session>>,
    /// The decoder weights the sessions above read in place: after them, so that it
    /// is dropped (unmapped) after them.
    _weights: Option<SharedWeights>,
    encoder_path: PathBuf,
    decoder_path: PathBuf,
    /// `past_self_k_0, past_self_v_0, …`, then `cross_k_0, cross_v_0, …`
    past_names: Vec<String>,
    present_names: Vec<String>,
    cross_names: Vec<String>,
    profile: Profile,
}

impl std::fmt::Debug for WhisperSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperSessions")
            .field("encoder", &self.encoder_path)
            .field("decoder", &self.decoder_path)
            .finish_non_exhaustive()
    }
}

impl WhisperSessions {
    pub fn load(
        config: WhisperConfig,
        encoder_path: &Path,
        decoder_path: &Path,
        session: &SessionConfig,
    ) -> Result<Self> {
        // Whisper::transcribe runs the encoder and the decoders side by side: from two
        // threads up, two decoder sessions (while one decodes, the other takes a core
        // whenever the encoder waits); the encoder and each decoder get half of the
        // threads. With one thread, one decoder.
        // Every decoder step has new shapes (the cache grows, beams finish), and the
        // encoder runs once per window: pooled memory buys no speed and keeps the peak
        // of the largest batch for good (measured on two files, base int8: 1.18 GB ->
        // 1.01 GB peak RSS, same speed).
        let with_threads = |threads: usize| SessionConfig {
            intra_threads: threads.max(1),
            pooled_memory: false,
            ..session.clone()
        };
        let workers = if session.intra_threads >= 2 { 2 } else { 1 };
        let half = (session.intra_threads / 2).max(1);
        // The decoder sessions share one copy of the weights when the graph keeps them
        // in an external data file (as the converter writes it): mapped once, handed to
        // each session as its initializers, packed once. The second session is built
        // after the first, so it finds the packed weights there; the encoder is built
        // beside them (graph optimisation takes a while).
        let weights = SharedWeights::open(decoder_path)?;
        let (encoder, decoders) = std::thread::scope(|scope| {
            let encoder = scope.spawn(|| create_session(encoder_path, &with_threads(half)));
            let decoders: Result<Vec<Session>> = (0..workers)
                .map(|_| {
                    create_session_sharing(decoder_path, &with_threads(half), weights.as_ref())
                })
                .collect();
            let encoder = encoder
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (encoder, decoders)
        });
        if let Some(w) = &weights {
            w.release_pages();
        }
        let (encoder, decoders) = (encoder?, decoders?);
        check_io(&encoder, encoder_path, &["mel"], &["cross_k", "cross_v"])?;
        let layer_names = |prefix: &str| -> Vec<String> {
            (0..config.n_dec_layers)
                .flat_map(|l| [format!("{prefix}_k_{l}"), format!("{prefix}_v_{l}")])
                .collect()
        };
        let past_names = layer_names("past_self");
        let present_names = layer_names("present_self");
        let cross_names = layer_names("cross");
        let inputs: Vec<&str> = std::iter::once("tokens")
            .chain(past_names.iter().map(String::as_str))
            .chain(cross_names.iter().map(String::as_str))
            .collect();
        let outputs: Vec<&str> = ["logits", "alignment_attn"]
            .into_iter()
            .chain(present_names.iter().map(String::as_str))
            .collect();
        // The decoder sessions are of one graph: checking one checks them all.
        check_io(&decoders[0], decoder_path, &inputs, &outputs)?;
        Ok(WhisperSessions {
            config,
            encoder: Mutex::new(encoder),
            decoders: decoders.into_iter().map(Mutex::new).collect(),
            _weights: weights,
            encoder_path: encoder_path.to_path_buf(),
            decoder_path: decoder_path.to_path_buf(),
            past_names,
            present_names,
            cross_names,
            profile: Profile::default(),
        })
    }

    /// Where the time went (see [`Profile`]).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// How many decoder sessions there are: how many threads may decode at a time.
    pub fn decoders(&self) -> usize {
        self.decoders.len()
    }

    fn cross_row(&self) -> usize {
        let c = &self.config;
        c.n_heads * c.head_dim() * c.n_audio_ctx
    }

    /// Runs the encoder on `batch` windows of mel features (`[B, n_mels, 3000]`).
    pub fn encode(&self, mel: &[f32], batch: usize) -> Result<CrossKv> {
        let c = &self.config;
        let frames = mel.len() / (batch * c.n_mels).max(1);
        let ctx = || format!("Whisper encoder ({})", self.encoder_path.display());
        let input = TensorRef::from_array_view(([batch, c.n_mels, frames], mel))
            .map_err(ort_error(ctx()))?;
        let mut session = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        count(&self.profile.windows, batch);
        let (k, v) = timed(&self.profile.encoder_ns, || -> Result<_> {
            let mut out = session
                .run(ort::inputs!["mel" => input])
                .map_err(ort_error(ctx()))?;
            let k = take_f32(&mut out, "cross_k", ctx)?;
            Ok((k, take_f32(&mut out, "cross_v", ctx)?))
        })?;
        let want = c.n_dec_layers * batch * self.cross_row();
        let (have_k, have_v) = (k.extract_tensor().1.len(), v.extract_tensor().1.len());
        if have_k != want || have_v != want {
            return Err(ModelError::Ort {
                context: ctx(),
                message: format!(
                    "cross_k has {have_k} values, expected {want} (is whisper.json from this model?)"
                ),
            });
        }
        Ok(CrossKv {
            batch,
            k: CrossData::Runtime(k),
            v: CrossData::Runtime(v),
        })
    }

    /// The windows `rows` of `cross` (a subset), copied into a batch of their own.
    pub fn select_cross(&self, cross: CrossView<'_>, rows: &[usize]) -> CrossKv {
        let row = self.cross_row();
        let len = self.config.n_dec_layers * rows.len() * row;
        timed(&self.profile.reorder_ns, || {
            let (mut k, mut v) = (Vec::with_capacity(len), Vec::with_capacity(len));
            for (layer_k, layer_v) in cross.layers(row) {
                for &r in rows {
                    k.extend_from_slice(&layer_k[r * row..(r + 1) * row]);
                    v.extend_from_slice(&layer_v[r * row..(r + 1) * row]);
                }
            }
            CrossKv::new(rows.len(), k, v)
        })
    }

    /// Bytes of encoder output per window (`cross_k` and `cross_v`, all layers).
    pub fn cross_bytes_per_window(&self) -> usize {
        2 * self.config.n_dec_layers * self.cross_row() * std::mem::size_of::<f32>()
    }

    /// An empty batch that encoder outputs join one by one, up to `capacity` windows.
    pub fn gather_cross(&self, capacity: usize) -> CrossGather {
        let len = self.config.n_dec_layers * capacity * self.cross_row();
        CrossGather {
            layers: self.config.n_dec_layers,
            row: self.cross_row(),
            capacity,
            batch: 0,
            // Zeroed by the allocator's fresh pages: untouched ones cost no memory.
            k: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// The rows `rows` of a cache, in that order (beam reordering; a row may repeat).
    pub fn select_cache(&self, cache: KvCache, rows: &[usize]) -> Result<KvCache> {
        let identity = rows.len() == cache.batch && rows.iter().enumerate().all(|(i, &r)| i == r);
        if identity {
            return Ok(cache);
        }
        if cache.past == 0 {
            return Ok(KvCache::empty(rows.len()));
        }
        let c = &self.config;
        let row = c.n_heads * cache.past * c.head_dim();
        let shape = [rows.len(), c.n_heads, cache.past, c.head_dim()];
        let ctx = || format!("Whisper decoder ({})", self.decoder_path.display());
        let started = std::time::Instant::now();
        let layers = cache
            .layers
            .iter()
            .map(|value| {
                let (_, data) = value
                    .try_extract_tensor::<f32>()
                    .map_err(ort_error(ctx()))?;
                let picked = gather_rows(data, 1, cache.batch, row, rows);
                Ok(Tensor::from_array((shape, picked))
                    .map_err(ort_error(ctx()))?
                    .into_dyn())
            })
            .collect::<Result<Vec<_>>>()?;
        add_elapsed(&self.profile.reorder_ns, started);
        Ok(KvCache {
            batch: rows.len(),
            past: cache.past,
            layers,
        })
    }

    /// One decoder call: `tokens` is `[B, T]` (row-major) after `cache.past` tokens.
    /// `cross` holds W windows and B is a multiple of W: rows `w*B/W .. (w+1)*B/W`
    /// (a window's beams or samples) attend to window `w`.
    pub fn decode(
        &self,
        tokens: &[i64],
        cache: &KvCache,
        cross: CrossView<'_>,
        want_alignment: bool,
    ) -> Result<DecoderOutput> {
        let c = &self.config;
        let batch = cache.batch;
        let windows = cross.batch;
        let ctx = || format!("Whisper decoder ({})", self.decoder_path.display());
        if windows == 0
            || !batch.is_multiple_of(windows)
            || !tokens.len().is_multiple_of(batch.max(1))
        {
            return Err(ModelError::InvalidInput(format!(
                "decoder: {batch} rows of {} tokens over {windows} windows",
                tokens.len()
            )));
        }
        let t = tokens.len() / batch;
        let (h, dh, s) = (c.n_heads, c.head_dim(), c.n_audio_ctx);
        let tokens = TensorRef::from_array_view(([batch, t], tokens)).map_err(ort_error(ctx()))?;
        let mut inputs: Vec<(&str, SessionInputValue<'_>)> =
            Vec::with_capacity(1 + self.past_names.len() + self.cross_names.len());
        inputs.push(("tokens", tokens.into()));
        if cache.past == 0 {
            for name in &self.past_names {
                let empty = Tensor::<f32>::from_array(([batch, h, 0, dh], Vec::new()))
                    .map_err(ort_error(ctx()))?;
                inputs.push((name, empty.into()));
            }
        } else {
            for (name, value) in self.past_names.iter().zip(&cache.layers) {
                inputs.push((name, value.into()));
            }
        }
        // One view per layer into the stacked encoder output: no copies.
        let per_layer = cross.layers(self.cross_row());
        for ((k, v), names) in per_layer.zip(self.cross_names.chunks_exact(2)) {
            let k =
                TensorRef::from_array_view(([windows, h, s, dh], k)).map_err(ort_error(ctx()))?;
            let v =
                TensorRef::from_array_view(([windows, h, dh, s], v)).map_err(ort_error(ctx()))?;
            inputs.push((&names[0], k.into()));
            inputs.push((&names[1], v.into()));
        }
        // A free session if there is one (each decoding thread finds its own).
        let mut session = timed(&self.profile.session_wait_ns, || {
            self.decoders
                .iter()
                .find_map(|d| d.try_lock().ok())
                .unwrap_or_else(|| self.decoders[0].lock().unwrap_or_else(|p| p.into_inner()))
        });
        let p = &self.profile;
        let spent = if want_alignment {
            count(&p.align_calls, 1);
            &p.align_decoder_ns
        } else {
            count(&p.decoder_calls, 1);
            count(&p.decoder_rows, batch);
            &p.decoder_ns
        };
        let started = std::time::Instant::now();
        let mut out = session.run(inputs).map_err(ort_error(ctx()))?;
        let extract = |name: &str| -> Result<Vec<f32>> {
            Ok(out[name]
                .try_extract_tensor::<f32>()
                .map_err(ort_error(ctx()))?
                .1
                .to_vec())
        };
        let alignment = if want_alignment {
            extract("alignment_attn")?
        } else {
            Vec::new()
        };
        let logits = take_f32(&mut out, "logits", ctx)?;
        add_elapsed(spent, started);
        let layers = self
            .present_names
            .iter()
            .map(|name| take_output(&mut out, name, ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderOutput {
            logits,
            cache: KvCache {
                batch,
                past: cache.past + t,
                layers,
            },
            alignment,
        })
    }
}

/// Encoder outputs joined into one batch as they arrive, each copied into its place
/// and then dropped, so the batch never holds its windows twice.
#[derive(Debug)]
pub struct CrossGather {
    layers: usize,
    row: usize,
    capacity: usize,
    batch: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl CrossGather {
    /// Appends the windows of `part`; false (and nothing joined) past the capacity.
    pub fn push(&mut self, part: CrossKv) -> bool {
        if self.batch + part.batch > self.capacity {
            return false;
        }
        let (row, capacity) = (self.row, self.capacity);
        for l in 0..self.layers {
            let from = l * part.batch * row..(l + 1) * part.batch * row;
            let to = (l * capacity + self.batch) * row;
            self.k[to..to + from.len()].copy_from_slice(&part.k()[from.clone()]);
            self.v[to..to + from.len()].copy_from_slice(&part.v()[from]);
        }
        self.batch += part.batch;
        true
    }

    /// The joined windows as one `[L, W, …]` batch, moved down in place when fewer
    /// than the capacity came.
    pub fn finish(mut self) -> CrossKv {
        let (row, capacity, batch) = (self.row, self.capacity, self.batch);
        if batch < capacity {
            for l in 1..self.layers {
                let from = l * capacity * row..(l * capacity + batch) * row;
                self.k.copy_within(from.clone(), l * batch * row);
                self.v.copy_within(from, l * batch * row);
            }
            self.k.truncate(self.layers * batch * row);
            self.v.truncate(self.layers * batch * row);
        }
        CrossKv::new(batch, self.k, self.v)
    }
}

/// Output `name` of a run, moved out of `out` (not copied); `ctx` names the graph in
/// the error.
fn take_output(
    out: &mut SessionOutputs<'_>,
    name: &str,
    ctx: impl Fn() -> String,
) -> Result<DynValue> {
    out.remove(name).ok_or_else(|| ModelError::Ort {
        context: ctx(),
        message: format!("no output {name}"),
    })
}

/// Output `name` of a run as an f32 tensor, moved out of `out` (not copied).
fn take_f32(
    out: &mut SessionOutputs<'_>,
    name: &str,
    ctx: impl Fn() -> String,
) -> Result<Tensor<f32>> {
    take_output(out, name, &ctx)?
        .downcast::<TensorValueType<f32>>()
        .map_err(|e| ort_error(ctx())(e))
}

/// Gathers rows of the batch axis of a `[L, B, row]` tensor.
fn gather_rows(data: &[f32], layers: usize, batch: usize, row: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(layers * rows.len() * row);
    for l in 0..layers {
        for &r in rows {
            let at = (l * batch + r) * row;
            out.extend_from_slice(&data[at..at + row]);
        }
    }
    out
}

fn check_io(session: &Session, path: &Path, inputs: &[&str], outputs: &[&str]) -> Result<()> {
    let have_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let have_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    if inputs.iter().all(|i| have_in.contains(i)) && outputs.iter().all(|o| have_out.contains(o)) {
        Ok(())
    } else {
        Err(ModelError::ModelLoad {
            path: path.to_path_buf(),
            message: format!(
                "not a speechmill Whisper graph (inputs {have_in:?}, outputs {have_out:?}; want {inputs:?} -> {outputs:?}); convert the checkpoint with models/tools/whisper_to_onnx.py"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_gather_joins_windows_layer_by_layer_and_closes_a_short_batch() {
        // L=2 layers, row=1 value per window; capacity 3, two parts of one window each.
        let mut gather = CrossGather {
            layers: 2,
            row: 1,
            capacity: 3,
            batch: 0,
            k: vec![0.0; 6],
            v: vec![0.0; 6],
        };
        let part = |a: f32, b: f32| CrossKv::new(1, vec![a, b], vec![-a, -b]);
        assert!(gather.push(part(1.0, 10.0)));
        assert!(gather.push(part(2.0, 20.0)));
        assert!(!gather.push(CrossKv::new(2, vec![0.0; 4], vec![0.0; 4])));
        let joined = gather.finish();
        assert_eq!(joined.batch, 2);
        assert_eq!(joined.k(), [1.0, 2.0, 10.0, 20.0]);
        assert_eq!(joined.v(), [-1.0, -2.0, -10.0, -20.0]);
    }

    #[test]
    fn gather_rows_repeats_and_reorders_the_batch_axis() {
        // L=2, B=2, row=2
        let data = vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
        let out = gather_rows(&data, 2, 2, 2, &[1, 1, 0]);
        assert_eq!(
            out,
            vec![2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0]
        );
    }
}
