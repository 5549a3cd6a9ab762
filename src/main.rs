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
///
/// glibc also raises its mmap threshold, up to 32 MiB, each time it frees a mapped
/// block, so after the first Whisper window every encoder activation, cross-attention
/// cache and decoded file of a few MiB is carved from the heap, whose holes then stay
/// resident. A fixed 4 MiB threshold hands blocks that large back to the kernel when
/// they are freed (bench-asr, base float32: 1.30-1.39 GB -> 1.05-1.14 GB peak RSS; the
/// decoder's per-step tensors stay below it, on the heap).
/// `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` in the environment still win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other
    // thread of this process exists.
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        }
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tune_malloc();
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
