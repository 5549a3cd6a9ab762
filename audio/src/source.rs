//! The byte source under symphonia: container sniffing, header sanity checks, and a
//! read budget that turns a looping demuxer into an error instead of a hang.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use symphonia::core::io::MediaSource;

use super::error::DecodeError;

/// How many leading bytes we look at to name the container.
const SNIFF_LEN: usize = 4096;

/// Bytes a demuxer may read before we call it looping: this many times the input
/// length (probing, end-of-stream scans and seeks re-read some data), plus a margin.
const READ_BUDGET_FACTOR: u64 = 4;
const READ_BUDGET_MARGIN: u64 = 16 << 20;

/// Shared between the source (owned by symphonia) and the decode loop.
#[derive(Debug, Default)]
pub(crate) struct ReadStats {
    bytes_read: AtomicU64,
    over_budget: AtomicBool,
}

impl ReadStats {
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    pub(crate) fn over_budget(&self) -> bool {
        self.over_budget.load(Ordering::Relaxed)
    }
}

/// A `MediaSource` that counts what it hands out and refuses to read past a budget.
pub(crate) struct GuardedSource<R> {
    inner: R,
    len: Option<u64>,
    budget: u64,
    stats: Arc<ReadStats>,
}

impl<R: Read + Seek + Send + Sync> GuardedSource<R> {
    pub(crate) fn new(inner: R, len: Option<u64>) -> (Self, Arc<ReadStats>) {
        let stats = Arc::new(ReadStats::default());
        let budget = len.map_or(u64::MAX, |len| {
            len.saturating_mul(READ_BUDGET_FACTOR)
                .saturating_add(READ_BUDGET_MARGIN)
        });
        let source = GuardedSource {
            inner,
            len,
            budget,
            stats: Arc::clone(&stats),
        };
        (source, stats)
    }
}

impl<R: Read> Read for GuardedSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stats.bytes_read() > self.budget {
            self.stats.over_budget.store(true, Ordering::Relaxed);
            return Err(io::Error::other("demuxer read budget exceeded"));
        }
        let n = self.inner.read(buf)?;
        self.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for GuardedSource<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl<R: Read + Seek + Send + Sync> MediaSource for GuardedSource<R> {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        self.len
    }
}

/// Reads the first bytes of `reader` and rewinds it.
pub(crate) fn read_head<R: Read + Seek>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    reader
        .by_ref()
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)?;
    reader.seek(SeekFrom::Start(0))?;
    Ok(head)
}

/// Names the container from its magic bytes; `None` when unrecognised (symphonia's
/// probe, which also scans past junk, has the last word).
pub(crate) fn sniff_container(head: &[u8]) -> Option<&'static str> {
    let at = |range: std::ops::Range<usize>| head.get(range);
    if matches!(at(0..4), Some(b"RIFF" | b"RF64")) && at(8..12) == Some(b"WAVE") {
        return Some("wav");
    }
    if at(0..4) == Some(b"fLaC") {
        return Some("flac");
    }
    if at(0..4) == Some(b"OggS") {
        return Some("ogg");
    }
    if at(0..4) == Some(&[0x1A, 0x45, 0xDF, 0xA3]) {
        // The EBML header's DocType sits in its first few dozen bytes.
        let ebml = &head[..head.len().min(64)];
        let is_webm = ebml.windows(4).any(|w| w == b"webm");
        return Some(if is_webm { "webm" } else { "mkv" });
    }
    if at(4..8) == Some(b"ftyp") {
        return Some("mp4");
    }
    if at(0..4) == Some(b"FORM") {
        return Some("aiff");
    }
    if at(0..3) == Some(b"ID3") {
        return Some("mp3");
    }
    match (head.first(), head.get(1)) {
        // ADTS: 12-bit sync, layer bits 00.
        (Some(0xFF), Some(b)) if b & 0xF6 == 0xF0 => Some("adts"),
        // MPEG audio frame sync with a non-zero layer.
        (Some(0xFF), Some(b)) if b & 0xE0 == 0xE0 && b & 0x06 != 0 => Some("mp3"),
        _ => None,
    }
}

/// Rejects a WAV whose `fmt ` chunk declares zero channels or a zero rate before
/// symphonia sees it (it would otherwise fail with a less precise message, or not at all).
pub(crate) fn check_wav_header(head: &[u8]) -> Result<(), DecodeError> {
    if sniff_container(head) != Some("wav") {
        return Ok(());
    }
    let mut pos = 12usize;
    while let Some(chunk) = head.get(pos..pos + 8) {
        let id = &chunk[..4];
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize;
        if id == b"fmt " {
            if let Some(fmt) = head.get(pos + 8..pos + 16) {
                let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
                let sample_rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
                if channels == 0 || sample_rate == 0 {
                    return Err(DecodeError::ZeroChannelsOrRate {
                        channels: u32::from(channels),
                        sample_rate,
                    });
                }
            }
            return Ok(());
        }
        // Chunks are padded to an even size.
        pos = pos
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_name_the_container() {
        assert_eq!(sniff_container(b"RIFF\0\0\0\0WAVEfmt "), Some("wav"));
        assert_eq!(sniff_container(b"fLaC\0\0\0\x22"), Some("flac"));
        assert_eq!(sniff_container(b"OggS\0\x02"), Some("ogg"));
        assert_eq!(sniff_container(b"\0\0\0\x20ftypM4A "), Some("mp4"));
        assert_eq!(sniff_container(b"ID3\x04"), Some("mp3"));
        assert_eq!(sniff_container(&[0xFF, 0xFB, 0x90]), Some("mp3"));
        assert_eq!(sniff_container(&[0xFF, 0xF1, 0x50]), Some("adts"));
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84];
        webm.extend_from_slice(b"webm");
        assert_eq!(sniff_container(&webm), Some("webm"));
        assert_eq!(sniff_container(b"hello world"), None);
        assert_eq!(sniff_container(b""), None);
    }
}
