//! `speechmill decode`: the decoder and resampler the stages use, on files.

use std::io::Write;
use std::path::PathBuf;

use speechmill_stages::audio::{DecodeOptions, decode_file_to_s16le};

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// Audio files (WAV, FLAC, MP3, Ogg Vorbis/Opus, WebM/Opus, M4A/AAC).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where the 16 kHz mono s16le samples go (`-` for stdout); files are concatenated.
    #[arg(long, default_value = "-")]
    pub out: String,
    /// Reject files longer than this many seconds.
    #[arg(long)]
    pub max_duration_s: Option<f64>,
}

pub fn decode(args: DecodeArgs) -> anyhow::Result<()> {
    let options = DecodeOptions {
        max_duration_s: args.max_duration_s,
        ..DecodeOptions::default()
    };
    let mut out: Box<dyn Write> = if args.out == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&args.out).map_err(|e| anyhow::anyhow!("{}: {e}", args.out))?,
        ))
    };
    for file in &args.files {
        let info = decode_file_to_s16le(file, &options, &mut out)
            .map_err(|e| anyhow::anyhow!("{}: {} ({})", file.display(), e, e.reason_code()))?;
        eprintln!(
            "{}: {} in {}, {} Hz, {} ch, {:.2} s",
            file.display(),
            info.codec,
            info.container,
            info.sample_rate,
            info.channels,
            info.duration_s
        );
    }
    out.flush()?;
    Ok(())
}
