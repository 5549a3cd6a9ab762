//! Silero VAD (`silero_vad.onnx`, v6): speech probability per 512-sample chunk at 16 kHz.
//!
//! The model is recurrent: each chunk is fed with the last 64 samples of the previous
//! chunk (context) and the previous RNN state. [`VadStream`] holds that per-source state;
//! [`SileroVad::process_batch`] advances N streams by one chunk each in a single model
//! call, so many sources can share one session and one call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::arr0;
use ort::session::Session;
use ort::value::Tensor;

use crate::runtime::{
    ModelError, Result, SessionConfig, create_session, model_path, one_line, ort_error, shared,
};

/// Sample rate the model takes.
pub const SAMPLE_RATE: u32 = 16_000;
/// New samples per model step (32 ms).
pub const CHUNK: usize = 512;
/// Samples of the previous chunk prepended to each step.
pub const CONTEXT: usize = 64;
/// Registry name of the model (`models/registry.toml`).
pub const MODEL_NAME: &str = "silero-vad";
const STATE: usize = 128;

/// The state of one audio stream: the previous chunk's last [`CONTEXT`] samples and the
/// RNN state (`[2, 128]`). A new stream starts from zeros.
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

impl SileroVad {
    /// Loads the registry's model (`<cache>/models/silero_vad.onnx`).
    pub fn new(config: &SessionConfig) -> Result<Self> {
        Self::from_path(&model_path(MODEL_NAME)?, config)
    }

    /// Loads the model at `path`; checks it has Silero's inputs and outputs.
    pub fn from_path(path: &Path, config: &SessionConfig) -> Result<Self> {
        let session = create_session(path, config)?;
        let has = |names: Vec<&str>, want: &[&str]| want.iter().all(|w| names.contains(w));
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if !has(inputs.clone(), &["input", "state", "sr"])
            || !has(outputs.clone(), &["output", "stateN"])
        {
            return Err(ModelError::ModelLoad {
                path: path.to_path_buf(),
                message: format!(
                    "not a Silero VAD v5/v6 model (inputs {inputs:?}, outputs {outputs:?}; want input, state, sr -> output, stateN)"
                ),
            });
        }
        Ok(SileroVad {
            session: Mutex::new(session),
            path: path.to_path_buf(),
        })
    }

    /// The registry's model, loaded once per process and config and shared.
    pub fn shared(config: &SessionConfig) -> Result<Arc<Self>> {
        let path = model_path(MODEL_NAME)?;
        Self::shared_from_path(&path, config)
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

    /// Advances each stream by one chunk and returns each stream's speech probability
    /// (one model call for the whole batch). `chunks[i]` is stream `i`'s next
    /// [`CHUNK`] samples at 16 kHz in [-1, 1]; a shorter chunk (end of a stream) is
    /// zero-padded. Results equal one-at-a-time processing of each stream.
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
        if n == 0 {
            return Ok(Vec::new());
        }
        let width = CONTEXT + CHUNK;
        let mut input = vec![0f32; n * width];
        let mut state = vec![0f32; 2 * n * STATE];
        for (i, (s, c)) in streams.iter().zip(chunks).enumerate() {
            if c.len() > CHUNK {
                return Err(ModelError::InvalidInput(format!(
                    "VAD chunk {i} has {} samples, at most {CHUNK} allowed",
                    c.len()
                )));
            }
            let row = &mut input[i * width..(i + 1) * width];
            row[..CONTEXT].copy_from_slice(&s.context);
            row[CONTEXT..CONTEXT + c.len()].copy_from_slice(c);
            for (l, layer) in s.state.iter().enumerate() {
                let at = (l * n + i) * STATE;
                state[at..at + STATE].copy_from_slice(layer);
            }
        }
        let new_context: Vec<[f32; CONTEXT]> = (0..n)
            .map(|i| {
                let mut c = [0f32; CONTEXT];
                c.copy_from_slice(&input[(i + 1) * width - CONTEXT..(i + 1) * width]);
                c
            })
            .collect();
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = || format!("Silero VAD ({})", self.path.display());
        let input = Tensor::from_array(([n, width], input)).map_err(ort_error(ctx()))?;
        let state = Tensor::from_array(([2, n, STATE], state)).map_err(ort_error(ctx()))?;
        let sr = Tensor::from_array(arr0::<i64>(SAMPLE_RATE as i64)).map_err(ort_error(ctx()))?;
        let outputs = session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sr])
            .map_err(ort_error(ctx()))?;
        let (_, probs) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        let (_, new_state) = outputs["stateN"]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        if probs.len() != n || new_state.len() != 2 * n * STATE {
            return Err(ModelError::Ort {
                context: ctx(),
                message: one_line(format!(
                    "unexpected output sizes {} and {} for batch {n}",
                    probs.len(),
                    new_state.len()
                )),
            });
        }
        for (i, (s, ctx)) in streams.iter_mut().zip(new_context).enumerate() {
            s.context = ctx;
            for l in 0..2 {
                let at = (l * n + i) * STATE;
                s.state[l].copy_from_slice(&new_state[at..at + STATE]);
            }
            s.chunks += 1;
        }
        Ok(probs.to_vec())
    }

    /// Advances one stream by one chunk (see [`process_batch`](Self::process_batch)).
    pub fn process_chunk(&self, stream: &mut VadStream, chunk: &[f32]) -> Result<f32> {
        Ok(self.process_batch(&mut [stream], &[chunk])?[0])
    }

    /// Speech probability of each 512-sample chunk of a whole 16 kHz mono signal (the
    /// last chunk zero-padded), like Silero's Python `get_speech_timestamps` sees them.
    pub fn probabilities(&self, samples_16k: &[f32]) -> Result<Vec<f32>> {
        let mut stream = VadStream::new();
        samples_16k
            .chunks(CHUNK)
            .map(|c| self.process_chunk(&mut stream, c))
            .collect()
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

    #[test]
    fn shared_instance_is_reused() {
        let a = SileroVad::shared(&SessionConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let b = SileroVad::shared(&SessionConfig::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.path().ends_with("models/silero_vad.onnx"));
    }
}
