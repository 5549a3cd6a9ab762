//! Decode one audio file to 16 kHz mono s16le: `decode16k INPUT OUTPUT` (`-` for
//! stdout). The same library call as `speechmill decode`, without the CLI around it.

use std::process::ExitCode;

use speechmill_audio::{DecodeOptions, decode_file_to_s16le};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: decode16k INPUT OUTPUT   (OUTPUT may be - for stdout)");
        return ExitCode::from(2);
    };
    let result = if output == "-" {
        decode_file_to_s16le(input, &DecodeOptions::default(), std::io::stdout().lock())
    } else {
        match std::fs::File::create(output) {
            Ok(file) => decode_file_to_s16le(input, &DecodeOptions::default(), file),
            Err(e) => {
                eprintln!("{output}: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    match result {
        Ok(info) => {
            eprintln!(
                "{input}: {} in {}, {} Hz, {} ch, {:.3} s, {} samples at 16 kHz",
                info.codec,
                info.container,
                info.sample_rate,
                info.channels,
                info.duration_s,
                info.samples_16k
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{input}: rejected ({}): {e}", e.reason_code());
            ExitCode::FAILURE
        }
    }
}
