//! Silero VAD (v6, converted to a sequence graph): speech probability per 512-sample
//! chunk at 16 kHz.
//!
//! The model is recurrent: each chunk is fed with the last 64 samples of the previous
//! chunk (context) and the previous LSTM state. Silero's own graph advances one chunk per
//! call; setup converts it (`models/tools/silero_to_sequence.py`) into a graph that runs
//! the stateless front end on many chunks at once and steps the LSTM through them inside
//! one call, for several streams side by side. [`VadStream`] holds a stream's state
//! between calls; [`SileroVad::process_streams`] advances many streams by any number of
//! samples, batched across streams, with results equal to chunk-by-chunk processing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::TensorRef;

use crate::runtime::{
    ModelError, ModelRef, Result, SessionConfig, SessionPool, create_session, model_path, one_line,
    ort_error, shared,
};

/// Sample rate the model takes.
pub const SAMPLE_RATE: u32 = 16_000;
/// New samples per model step (32 ms).
pub const CHUNK: usize = 512;
/// Samples of the previous chunk prepended to each step.
pub const CONTEXT: usize = 64;
/// Registry name of Silero's model (`models/registry.toml`), the source of the graph run.
pub const MODEL_NAME: &str = "silero-vad";
/// The sequence graph setup converts it into, in `<cache>/models/`.
pub const SEQUENCE_MODEL: &str = "silero_vad_sequence.onnx";
const STATE: usize = 128;
/// Chunks (over all streams) per model call: bounds the call's intermediates (~13 kB
/// per chunk) while keeping calls few.
const CHUNKS_PER_CALL: usize = 1024;

/// The state of one audio stream: the previous chunk's last [`CONTEXT`] samples and the
/// LSTM state (`h`, `c`). A new stream starts from zeros.
#[derive(Debug, Clone, PartialEq)]
pub struct VadStream {
    context: [f32; CONTEXT],
    state: [[f32; STATE]; 2],
    chunks: u64,
}

impl Default for VadStream {
    fn default() -> Self {
        VadStream {
            context: [0.0; CONTEXT],
            state: [[0.0; STATE]; 2],
            chunks: 0,
        }
    }
}

impl VadStream {
    /// A stream at its start.
    pub fn new() -> Self {
        Self::default()
    }

    /// Back to the start (zero context and state).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Chunks processed so far; chunk `i` covers samples `i*512 .. (i+1)*512`.
    pub fn chunks_processed(&self) -> u64 {
        self.chunks
    }
}

/// A Silero VAD model: one ONNX Runtime session, shareable across threads (`&self`
/// methods; calls are serialised on the session).
pub struct SileroVad {
    session: Mutex<Session>,
    path: PathBuf,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The sequence graph setup made (`<cache>/models/silero_vad_sequence.onnx`).
pub fn sequence_model_path() -> Result<PathBuf> {
    model_path(SEQUENCE_MODEL)
}

/// The sequence graph setup made, hashed: what a plan carries (see [`ModelRef`]).
pub fn model_ref() -> Result<ModelRef> {
    ModelRef::hashed(MODEL_NAME, SEQUENCE_MODEL, &[])
}

impl SileroVad {
    /// The process's pool of sessions of the graph `model` names (verified against it
    /// once per process), one session per concurrent caller: one shared session would
    /// serialise every partition's VAD on its lock.
    pub fn pool(model: &ModelRef, config: &SessionConfig) -> Result<Arc<SessionPool<Self>>> {
        SessionPool::shared(model, config, Self::from_path)
    }

    /// Loads the sequence graph setup made from the registry's model.
    pub fn new(config: &SessionConfig) -> Result<Self> {
        Self::from_path(&sequence_model_path()?, config)
    }

    /// Loads the sequence graph at `path`; checks its inputs and outputs.
    pub fn from_path(path: &Path, config: &SessionConfig) -> Result<Self> {
        let session = create_session(path, config)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if inputs != ["input", "state"] || outputs != ["output", "stateN"] {
            return Err(ModelError::ModelLoad {
                path: path.to_path_buf(),
                message: format!(
                    "not a Silero VAD sequence graph (inputs {inputs:?}, outputs {outputs:?}; want input, state -> output, stateN): convert silero_vad.onnx with models/tools/silero_to_sequence.py"
                ),
            });
        }
        Ok(SileroVad {
            session: Mutex::new(session),
            path: path.to_path_buf(),
        })
    }

    /// The setup's model, loaded once per process and config and shared.
    pub fn shared(config: &SessionConfig) -> Result<Arc<Self>> {
        Self::shared_from_path(&sequence_model_path()?, config)
    }

    /// The model at `path`, loaded once per process and config and shared.
    pub fn shared_from_path(path: &Path, config: &SessionConfig) -> Result<Arc<Self>> {
        let key = format!("{}|{config:?}", path.display());
        shared(&key, || Self::from_path(path, config))
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Advances each stream by its samples (16 kHz, [-1, 1]) and returns each stream's
    /// speech probability per chunk: `samples[i].len().div_ceil(512)` values, a shorter
    /// last chunk zero-padded (as at the end of a stream). The streams advance together
    /// in few model calls; results equal chunk-by-chunk processing of each stream, so a
    /// stream can be fed in pieces of whole chunks across calls.
    pub fn process_streams(
        &self,
        streams: &mut [&mut VadStream],
        samples: &[&[f32]],
    ) -> Result<Vec<Vec<f32>>> {
        let n = streams.len();
        if samples.len() != n {
            return Err(ModelError::InvalidInput(format!(
                "VAD batch has {n} streams but {} sample buffers",
                samples.len()
            )));
        }
        let total: Vec<usize> = samples.iter().map(|s| s.len().div_ceil(CHUNK)).collect();
        let mut done = vec![0usize; n];
        let mut probs: Vec<Vec<f32>> = total.iter().map(|&t| Vec::with_capacity(t)).collect();
        loop {
            let live: Vec<usize> = (0..n).filter(|&i| done[i] < total[i]).collect();
            let Some(fewest) = live.iter().map(|&i| total[i] - done[i]).min() else {
                break;
            };
            // Every live stream advances by the same number of real chunks, so no
            // stream's state runs past its samples.
            let steps = fewest.min((CHUNKS_PER_CALL / live.len()).max(1));
            let (mut picked, pieces): (Vec<&mut VadStream>, Vec<(&[f32], usize)>) = streams
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| done[*i] < total[*i])
                .map(|(i, s)| (&mut **s, (samples[i], done[i])))
                .unzip();
            let out = self.run(&mut picked, &pieces, steps)?;
            for (j, &i) in live.iter().enumerate() {
                probs[i].extend((0..steps).map(|t| out[t * live.len() + j]));
                done[i] += steps;
            }
        }
        Ok(probs)
    }

    /// One model call: `steps` chunks of each stream, stream `j` starting at chunk
    /// `pieces[j].1` of `pieces[j].0`. Returns `[steps, streams]` probabilities.
    fn run(
        &self,
        streams: &mut [&mut VadStream],
        pieces: &[(&[f32], usize)],
        steps: usize,
    ) -> Result<Vec<f32>> {
        let b = streams.len();
        let width = CONTEXT + CHUNK;
        let mut input = vec![0f32; steps * b * width];
        let mut state = vec![0f32; 2 * b * STATE];
        let mut contexts = Vec::with_capacity(b);
        for (j, (stream, &(samples, first))) in streams.iter().zip(pieces).enumerate() {
            for (l, layer) in stream.state.iter().enumerate() {
                state[(l * b + j) * STATE..(l * b + j + 1) * STATE].copy_from_slice(layer);
            }
            let mut context = stream.context;
            for t in 0..steps {
                let row = &mut input[(t * b + j) * width..(t * b + j + 1) * width];
                row[..CONTEXT].copy_from_slice(&context);
                let at = (first + t) * CHUNK;
                let chunk = &samples[at..(at + CHUNK).min(samples.len())];
                row[CONTEXT..CONTEXT + chunk.len()].copy_from_slice(chunk);
                context.copy_from_slice(&row[width - CONTEXT..]);
            }
            contexts.push(context);
        }
        let ctx = || format!("Silero VAD ({})", self.path.display());
        let input_t = TensorRef::from_array_view(([steps, b, width], &input[..]))
            .map_err(ort_error(ctx()))?;
        let state_t =
            TensorRef::from_array_view(([2, b, STATE], &state[..])).map_err(ort_error(ctx()))?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs!["input" => input_t, "state" => state_t])
            .map_err(ort_error(ctx()))?;
        let (_, probs) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        let (_, new_state) = outputs["stateN"]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        if probs.len() != steps * b || new_state.len() != 2 * b * STATE {
            return Err(ModelError::Ort {
                context: ctx(),
                message: one_line(format!(
                    "unexpected output sizes {} and {} for {steps} steps of {b} streams",
                    probs.len(),
                    new_state.len()
                )),
            });
        }
        for (j, (s, context)) in streams.iter_mut().zip(contexts).enumerate() {
            s.context = context;
            for l in 0..2 {
                let at = (l * b + j) * STATE;
                s.state[l].copy_from_slice(&new_state[at..at + STATE]);
            }
            s.chunks += steps as u64;
        }
        Ok(probs.to_vec())
    }

    /// Advances each stream by one chunk and returns each stream's speech probability
    /// (one model call for the whole batch). `chunks[i]` is stream `i`'s next
    /// [`CHUNK`] samples at 16 kHz in [-1, 1]; a shorter chunk (end of a stream) is
    /// zero-padded.
    pub fn process_batch(
        &self,
        streams: &mut [&mut VadStream],
        chunks: &[&[f32]],
    ) -> Result<Vec<f32>> {
        let n = streams.len();
        if chunks.len() != n {
            return Err(ModelError::InvalidInput(format!(
                "VAD batch has {n} streams but {} chunks",
                chunks.len()
            )));
        }
        if let Some((i, c)) = chunks.iter().enumerate().find(|(_, c)| c.len() > CHUNK) {
            return Err(ModelError::InvalidInput(format!(
                "VAD chunk {i} has {} samples, at most {CHUNK} allowed",
                c.len()
            )));
        }
        // An empty chunk still advances its stream by one (all-zero) chunk.
        let zeros = [0f32; 1];
        let chunks: Vec<&[f32]> = chunks
            .iter()
            .map(|c| if c.is_empty() { &zeros[..] } else { *c })
            .collect();
        let probs = self.process_streams(streams, &chunks)?;
        Ok(probs.into_iter().map(|p| p[0]).collect())
    }

    /// Advances one stream by one chunk (see [`process_batch`](Self::process_batch)).
    pub fn process_chunk(&self, stream: &mut VadStream, chunk: &[f32]) -> Result<f32> {
        Ok(self.process_batch(&mut [stream], &[chunk])?[0])
    }

    /// Speech probability of each 512-sample chunk of a whole 16 kHz mono signal (the
    /// last chunk zero-padded), like Silero's Python `get_speech_timestamps` sees them.
    pub fn probabilities(&self, samples_16k: &[f32]) -> Result<Vec<f32>> {
        let mut stream = VadStream::new();
        Ok(self
            .process_streams(&mut [&mut stream], &[samples_16k])?
            .pop()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

    /// The VAD from the setup artefacts; a clear failure (not a skip) when setup has not run.
    fn vad() -> SileroVad {
        SileroVad::new(&SessionConfig::default()).unwrap_or_else(|e| {
            panic!("Silero VAD unavailable, these tests need the setup step: {e}")
        })
    }

    fn librivox(name: &str) -> Vec<f32> {
        let path = format!("{LIBRIVOX}/{name}.wav");
        let mut r = hound::WavReader::open(&path).unwrap_or_else(|e| {
            panic!("cannot read {path} ({e}): run `bash scripts/setup.sh` (Debian package pocketsphinx-testdata)")
        });
        let spec = r.spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (16_000, 1, 16)
        );
        r.samples::<i16>()
            .map(|s| s.unwrap() as f32 / 32768.0)
            .collect()
    }

    #[test]
    fn speech_is_high_and_silence_is_low() {
        let vad = vad();
        let samples = librivox("sense_and_sensibility_01_austen_64kb-0870");
        let probs = vad.probabilities(&samples).unwrap();
        assert_eq!(probs.len(), samples.len().div_ceil(CHUNK));
        let speech = probs.iter().filter(|&&p| p > 0.5).count() as f32 / probs.len() as f32;
        eprintln!(
            "{} chunks, {:.0}% > 0.5, first {:?}",
            probs.len(),
            speech * 100.0,
            &probs[..3]
        );
        assert!(
            speech > 0.7,
            "only {:.0}% of chunks > 0.5: {probs:?}",
            speech * 100.0
        );

        let silence = vad.probabilities(&vec![0.0; 16_000 * 3]).unwrap();
        let max = silence.iter().cloned().fold(0.0, f32::max);
        eprintln!("silence: max probability {max}");
        assert!(max < 0.1, "digital silence gave speech probability {max}");
    }

    #[test]
    fn batched_equals_one_at_a_time() {
        let vad = vad();
        let clips: Vec<Vec<f32>> = [
            "sense_and_sensibility_01_austen_64kb-0880",
            "sense_and_sensibility_01_austen_64kb-0930",
            "sense_and_sensibility_01_austen_64kb-0890",
        ]
        .iter()
        .map(|n| librivox(n))
        .collect();
        let single: Vec<Vec<f32>> = clips
            .iter()
            .map(|c| vad.probabilities(c).unwrap())
            .collect();

        // Clips differ in length: a stream that has ended drops out of later batches.
        let mut streams = vec![VadStream::new(); clips.len()];
        let mut batched = vec![Vec::new(); clips.len()];
        let steps = clips.iter().map(|c| c.len().div_ceil(CHUNK)).max().unwrap();
        for step in 0..steps {
            let live: Vec<usize> = (0..clips.len())
                .filter(|&i| step * CHUNK < clips[i].len())
                .collect();
            let chunks: Vec<&[f32]> = live
                .iter()
                .map(|&i| &clips[i][step * CHUNK..((step + 1) * CHUNK).min(clips[i].len())])
                .collect();
            let mut refs: Vec<&mut VadStream> = streams
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| live.contains(i))
                .map(|(_, s)| s)
                .collect();
            let probs = vad.process_batch(&mut refs, &chunks).unwrap();
            for (&i, p) in live.iter().zip(probs) {
                batched[i].push(p);
            }
        }
        let mut max_diff = 0f32;
        for (i, (a, b)) in single.iter().zip(&batched).enumerate() {
            assert_eq!(a.len(), b.len());
            assert_eq!(streams[i].chunks_processed() as usize, a.len());
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                assert!((x - y).abs() < 1e-4, "stream {i} chunk {k}: {x} vs {y}");
                max_diff = max_diff.max((x - y).abs());
            }
        }
        eprintln!("batched vs single: max difference {max_diff:e}");
    }

    #[test]
    fn bad_input_and_missing_model_are_clear_errors() {
        let missing = Path::new("/nonexistent/speechmill/silero_vad.onnx");
        let msg = SileroVad::from_path(missing, &SessionConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/nonexistent/speechmill/silero_vad.onnx"),
            "{msg}"
        );
        assert!(msg.contains("run `bash scripts/setup.sh`"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");

        let vad = vad();
        let mut s = VadStream::new();
        let e = vad
            .process_batch(&mut [&mut s], &[&[0.0; CHUNK + 1]])
            .unwrap_err();
        assert!(e.to_string().contains("513 samples"), "{e}");
        let e = vad.process_batch(&mut [&mut s], &[]).unwrap_err();
        assert!(e.to_string().contains("1 streams but 0 chunks"), "{e}");
        assert_eq!(s.chunks_processed(), 0);
        assert!(vad.process_batch(&mut [], &[]).unwrap().is_empty());
    }

    /// Silero's own graph (`silero_vad.onnx`, one chunk per call), run chunk by chunk:
    /// the reference the converted sequence graph must reproduce.
    fn silero_reference(samples: &[f32]) -> Vec<f32> {
        let path = model_path(MODEL_NAME).unwrap_or_else(|e| panic!("{e}"));
        let mut session = create_session(&path, &SessionConfig::default()).unwrap();
        let mut state = vec![0f32; 2 * STATE];
        let mut context = [0f32; CONTEXT];
        let mut out = Vec::new();
        for chunk in samples.chunks(CHUNK) {
            let mut row = vec![0f32; CONTEXT + CHUNK];
            row[..CONTEXT].copy_from_slice(&context);
            row[CONTEXT..CONTEXT + chunk.len()].copy_from_slice(chunk);
            context.copy_from_slice(&row[CHUNK..]);
            let input = ort::value::Tensor::from_array(([1, CONTEXT + CHUNK], row)).unwrap();
            let st = ort::value::Tensor::from_array(([2, 1, STATE], state.clone())).unwrap();
            let sr = ort::value::Tensor::from_array(ndarray::arr0::<i64>(16_000)).unwrap();
            let o = session
                .run(ort::inputs!["input" => input, "state" => st, "sr" => sr])
                .unwrap();
            out.push(o["output"].try_extract_tensor::<f32>().unwrap().1[0]);
            state = o["stateN"].try_extract_tensor::<f32>().unwrap().1.to_vec();
        }
        out
    }

    #[test]
    fn sequence_graph_equals_silero_chunk_by_chunk() {
        let vad = vad();
        let clips: Vec<Vec<f32>> = [
            "sense_and_sensibility_01_austen_64kb-0870",
            "sense_and_sensibility_01_austen_64kb-0930",
        ]
        .iter()
        .map(|n| librivox(n))
        .collect();
        let mut worst = 0f32;
        for clip in &clips {
            let ours = vad.probabilities(clip).unwrap();
            let reference = silero_reference(clip);
            assert_eq!(ours.len(), reference.len());
            for (k, (a, b)) in ours.iter().zip(&reference).enumerate() {
                assert!((a - b).abs() < 1e-4, "chunk {k}: {a} vs Silero's {b}");
                worst = worst.max((a - b).abs());
            }
        }
        eprintln!("sequence graph vs Silero's graph: max difference {worst:e}");
    }

    #[test]
    fn streams_fed_in_pieces_and_together_equal_one_stream_alone() {
        let vad = vad();
        let a = librivox("sense_and_sensibility_01_austen_64kb-0880");
        let b = librivox("sense_and_sensibility_01_austen_64kb-0890");
        let alone = [
            vad.probabilities(&a).unwrap(),
            vad.probabilities(&b).unwrap(),
        ];
        // Both streams together, each fed in two pieces of whole chunks (a split
        // mid-stream must carry context and state across calls).
        let (split_a, split_b) = (CHUNK * 37, CHUNK * 150);
        let mut streams = [VadStream::new(), VadStream::new()];
        let [sa, sb] = &mut streams;
        let first = vad
            .process_streams(&mut [sa, sb], &[&a[..split_a], &b[..split_b]])
            .unwrap();
        let [sa, sb] = &mut streams;
        let second = vad
            .process_streams(&mut [sa, sb], &[&a[split_a..], &b[split_b..]])
            .unwrap();
        for (i, (f, s)) in first.into_iter().zip(second).enumerate() {
            let together: Vec<f32> = f.into_iter().chain(s).collect();
            assert_eq!(together.len(), alone[i].len());
            assert_eq!(streams[i].chunks_processed() as usize, together.len());
            for (k, (x, y)) in together.iter().zip(&alone[i]).enumerate() {
                assert!((x - y).abs() < 1e-5, "stream {i} chunk {k}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn silero_own_graph_is_refused_with_the_conversion_to_run() {
        let path = model_path(MODEL_NAME).unwrap_or_else(|e| panic!("{e}"));
        let e = SileroVad::from_path(&path, &SessionConfig::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("silero_to_sequence.py"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn a_pool_loads_the_verified_graph_and_refuses_another() {
        let model = model_ref().unwrap_or_else(|e| panic!("{e}"));
        let pool = SileroVad::pool(&model, &SessionConfig::default()).unwrap();
        let probs = pool
            .with(|vad| vad.probabilities(&[0.0; CHUNK * 3]))
            .unwrap()
            .unwrap();
        assert_eq!(probs.len(), 3);

        // The graph on this machine is not the one a plan was made with.
        let mut other = model.clone();
        other.files[0].sha256 = "a".repeat(64);
        let msg = SileroVad::pool(&other, &SessionConfig::default())
            .unwrap_err()
            .to_string();
        assert!(!msg.contains('\n'), "{msg}");
        for needle in [
            MODEL_NAME,
            SEQUENCE_MODEL,
            model.files[0].sha256.as_str(),
            other.files[0].sha256.as_str(),
            "bash scripts/setup.sh",
        ] {
            assert!(msg.contains(needle), "{needle} not in: {msg}");
        }
    }

    #[test]
    fn shared_instance_is_reused() {
        let a = SileroVad::shared(&SessionConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let b = SileroVad::shared(&SessionConfig::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.path().ends_with("models/silero_vad_sequence.onnx"));
    }
}
