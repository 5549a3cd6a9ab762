//! The `speechmill` command line: a thin layer over the pipeline and stages crates.

mod cli;
mod report;

use std::process::ExitCode;

use clap::Parser;

/// Warnings only; symphonia logs every undecodable probe as an error, which the
/// rejects table already records with its reason.
const DEFAULT_LOG_FILTER: &str = "warn,symphonia_core=off,symphonia_bundle_mp3=off,symphonia_bundle_flac=off,\
symphonia_codec_aac=off,symphonia_codec_vorbis=off,symphonia_codec_pcm=off,symphonia_codec_adpcm=off,\
symphonia_format_riff=off,symphonia_format_ogg=off,symphonia_format_mkv=off,symphonia_format_isomp4=off";

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core), and
/// freed memory stays in the arena that freed it. ONNX Runtime's intra-op threads, the
/// encoder and decoder hand-off threads and the async runtime's workers each free
/// large tensors in their own arena, so peak RSS grew with the thread count. Two arenas
/// keep allocation contention low on the threads that matter and the heap shared
/// (measured on a corpus run, base int8: 1.01 GB -> 0.90 GB peak RSS, same speed).
/// `MALLOC_ARENA_MAX` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called before any
        // other thread of this process exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    limit_malloc_arenas();
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPEECHMILL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::execute(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let line = message.join(": ");
            eprintln!(
                "error: {}",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}
