//! Where a Whisper model's time goes: counters that a loaded model adds to as it runs
//! (all threads together, since the model was loaded), read with [`Whisper::profile`]
//! and logged by the `asr` stage at debug level on the `speechmill::profile` target.
//! `scripts/profile-asr.sh` turns them into a table per 30 s window.
//!
//! Times are summed over the threads that spent them, so with the encoder and two
//! decoder threads side by side they add up to more than the wall time.
//!
//! [`Whisper::profile`]: super::Whisper::profile

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// The running counters (see the module docs).
        #[derive(Debug, Default)]
        pub struct Profile {
            $(#[doc = $doc] pub(crate) $name: AtomicU64,)*
        }

        /// The counters at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct ProfileSnapshot {
            $(#[doc = $doc] pub $name: u64,)*
        }

        impl Profile {
            pub fn snapshot(&self) -> ProfileSnapshot {
                ProfileSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl fmt::Display for ProfileSnapshot {
            /// `name=value` pairs separated by spaces, in declaration order.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let fields: &[(&str, u64)] = &[$((stringify!($name), self.$name),)*];
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{name}={value}")?;
                }
                Ok(())
            }
        }
    };
}

counters! {
    windows: "30 s windows through the encoder.",
    mel_ns: "Log-mel features of those windows.",
    encoder_ns: "Encoder runs, output copied out.",
    decoder_calls: "Decoder calls that choose tokens (language detection, beam or sampling steps).",
    decoder_rows: "Rows (windows × beams) of those calls, summed.",
    decoder_ns: "Those calls, logits copied out.",
    session_wait_ns: "Waiting for a free decoder session.",
    reorder_ns: "Gathering cache rows after a beam step and cross-attention rows of a subset of windows.",
    decode_batch_ns: "Decoding batches, everything included (the search, its bookkeeping and word timings).",
    align_calls: "Teacher-forced passes for word timings or given texts.",
    align_decoder_ns: "Their decoder calls, with the alignment heads' attention.",
    align_ns: "Word timings, everything included (the decoder call and DTW).",
    decoder_wait_ns: "Decoder threads waiting for the encoder's next batch.",
    encoder_wait_ns: "The encoder thread waiting for a decoder thread to take its batch.",
}

/// Adds `n` to a counter.
pub(crate) fn count(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// Adds the nanoseconds since `start` to `counter`.
pub(crate) fn add_elapsed(counter: &AtomicU64, start: Instant) {
    counter.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// Runs `f` and adds the nanoseconds it took to `counter`.
pub(crate) fn timed<T>(counter: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    add_elapsed(counter, start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_prints_every_counter_in_order() {
        let p = Profile::default();
        count(&p.windows, 3);
        timed(&p.encoder_ns, || {
            std::thread::sleep(std::time::Duration::from_millis(2))
        });
        count(&p.windows, 2);
        let snapshot = p.snapshot();
        assert_eq!(snapshot.windows, 5);
        assert!(snapshot.encoder_ns >= 2_000_000, "{snapshot}");
        let line = snapshot.to_string();
        assert!(line.starts_with("windows=5 mel_ns=0 "), "{line}");
        assert!(line.ends_with(" encoder_wait_ns=0"), "{line}");
        assert_eq!(line.split(' ').count(), 14);
    }
}
