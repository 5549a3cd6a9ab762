//! Transcribes 16 kHz mono WAV files with a converted Whisper model.
//!
//!   cargo run --release -p speechmill-models --example transcribe -- whisper-tiny.en int8 5 a.wav b.wav

use speechmill_models::SessionConfig;
use speechmill_models::whisper::{DecodeOptions, Precision, Whisper};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: transcribe MODEL fp32|int8 BEAM FILE.wav...".into());
    }
    let dir = Whisper::resolve(&args[0])?;
    let precision: Precision = args[1].parse()?;
    let beam: usize = args[2].parse()?;
    let whisper = Whisper::load(&dir, precision, &SessionConfig::cpu(2))?;
    let clips: Vec<Vec<f32>> = args[3..]
        .iter()
        .map(|p| -> Result<Vec<f32>, hound::Error> {
            hound::WavReader::open(p)?
                .samples::<i16>()
                .map(|s| s.map(|v| v as f32 / 32768.0))
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let refs: Vec<&[f32]> = clips.iter().map(|c| c.as_slice()).collect();
    let options = DecodeOptions {
        beam_size: beam,
        ..DecodeOptions::default()
    };
    let t0 = std::time::Instant::now();
    let out = whisper.transcribe(&refs, &options, 8)?;
    let secs: f64 = clips.iter().map(|c| c.len() as f64 / 16_000.0).sum();
    for (path, t) in args[3..].iter().zip(&out) {
        println!(
            "{path}: [{} {:.2}] avg_logprob {:.3} no_speech {:.3} T={} {:?}\n  tokens {:?}\n  words {:?}",
            t.language,
            t.language_prob,
            t.avg_logprob,
            t.no_speech_prob,
            t.temperature,
            t.text,
            t.tokens,
            t.words
                .iter()
                .map(|w| format!("{}@{:.2}-{:.2}", w.word, w.start, w.end))
                .collect::<Vec<_>>()
        );
    }
    eprintln!(
        "{secs:.1} s of audio in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
