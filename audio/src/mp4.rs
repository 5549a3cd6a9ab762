//! MP4 edit lists, which symphonia 0.5 parses but does not apply: an AAC encoder's
//! priming samples (1024 for ffmpeg's and Apple's encoders) sit before the
//! presentation start, and the last frame's padding after its end. ffmpeg trims both,
//! and so do we, so AAC output is aligned with the source like every other codec.

use std::io::{self, Read, Seek, SeekFrom};

/// A `moov` box larger than this is not read for its edit lists (they are then ignored).
const MAX_MOOV_LEN: u64 = 64 << 20;

/// The presentation window of one track, from its edit list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Mp4Edit {
    /// Seconds of decoded media before the presentation starts (encoder priming).
    pub(crate) skip_s: f64,
    /// Seconds presented, when the edit says.
    pub(crate) keep_s: Option<f64>,
}

/// The edit of each `trak`, in file order (symphonia numbers MP4 tracks the same way);
/// `None` for a track without a usable edit list. Any parsing problem yields no edits:
/// this only refines what symphonia decodes, it never rejects a file.
pub(crate) fn read_edits<R: Read + Seek>(reader: &mut R, len: u64) -> Vec<Option<Mp4Edit>> {
    let edits = find_moov(reader, len)
        .ok()
        .flatten()
        .map(|moov| parse_moov(&moov))
        .unwrap_or_default();
    // The caller continues from the start.
    if reader.seek(SeekFrom::Start(0)).is_err() {
        return Vec::new();
    }
    edits
}

fn find_moov<R: Read + Seek>(reader: &mut R, len: u64) -> io::Result<Option<Vec<u8>>> {
    let mut pos = 0u64;
    while pos.saturating_add(8) <= len {
        reader.seek(SeekFrom::Start(pos))?;
        let mut header = [0u8; 16];
        reader.read_exact(&mut header[..8])?;
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let (size, header_len) = match size32 {
            0 => (len - pos, 8),
            1 => {
                reader.read_exact(&mut header[8..16])?;
                let mut large = [0u8; 8];
                large.copy_from_slice(&header[8..16]);
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header_len {
            return Ok(None);
        }
        if &header[4..8] == b"moov" {
            let body_len = size - header_len;
            if body_len > MAX_MOOV_LEN || pos.saturating_add(size) > len {
                return Ok(None);
            }
            let mut body = vec![0u8; body_len as usize];
            reader.read_exact(&mut body)?;
            return Ok(Some(body));
        }
        pos = pos.saturating_add(size);
    }
    Ok(None)
}

/// The child boxes of a box body: (type, body).
fn boxes(mut data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let size32 = u32::from_be_bytes(data.get(..4)?.try_into().ok()?);
        let kind = data.get(4..8)?;
        let (size, header_len) = match size32 {
            0 => (data.len(), 8),
            1 => (
                usize::try_from(u64::from_be_bytes(data.get(8..16)?.try_into().ok()?)).ok()?,
                16,
            ),
            n => (n as usize, 8),
        };
        let body = data.get(header_len..size)?;
        data = &data[size..];
        Some((kind, body))
    })
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// The timescale of an `mvhd` or `mdhd` body (same layout up to it).
fn timescale(body: &[u8]) -> Option<u32> {
    match body.first()? {
        0 => be_u32(body, 12),
        1 => be_u32(body, 20),
        _ => None,
    }
    .filter(|&t| t > 0)
}

fn parse_moov(moov: &[u8]) -> Vec<Option<Mp4Edit>> {
    let movie_timescale = boxes(moov)
        .find(|(kind, _)| *kind == b"mvhd")
        .and_then(|(_, body)| timescale(body));
    boxes(moov)
        .filter(|(kind, _)| *kind == b"trak")
        .map(|(_, trak)| parse_trak(trak, movie_timescale))
        .collect()
}

fn parse_trak(trak: &[u8], movie_timescale: Option<u32>) -> Option<Mp4Edit> {
    let (_, mdia) = boxes(trak).find(|(kind, _)| *kind == b"mdia")?;
    let media_timescale = boxes(mdia)
        .find(|(kind, _)| *kind == b"mdhd")
        .and_then(|(_, body)| timescale(body))?;
    let (_, edts) = boxes(trak).find(|(kind, _)| *kind == b"edts")?;
    let (_, elst) = boxes(edts).find(|(kind, _)| *kind == b"elst")?;
    let version = *elst.first()?;
    let count = be_u32(elst, 4)? as usize;
    let entry_len = if version == 1 { 20 } else { 12 };
    let mut presented = Vec::new();
    for i in 0..count.min(1024) {
        let at = 8 + i * entry_len;
        let (duration, media_time) = if version == 1 {
            (be_u64(elst, at)?, be_u64(elst, at + 8)? as i64)
        } else {
            (
                u64::from(be_u32(elst, at)?),
                i64::from(be_u32(elst, at + 4)? as i32),
            )
        };
        // media_time -1 is an empty edit (a leading pause), which we do not insert.
        if media_time >= 0 {
            presented.push((duration, media_time));
        }
    }
    // Only the common single-window case is applied; anything fancier is left alone.
    let [(duration, media_time)] = presented[..] else {
        return None;
    };
    let keep_s = movie_timescale
        .filter(|_| duration > 0)
        .map(|ts| duration as f64 / f64::from(ts));
    Some(Mp4Edit {
        skip_s: media_time as f64 / f64::from(media_timescale),
        keep_s,
    })
}

/// Applies an edit to a track's decoded mono samples, packet by packet.
#[derive(Debug)]
pub(crate) struct EditTrimmer {
    edit: Mp4Edit,
    /// Frames still to drop / that may still pass, once the rate is known.
    window: Option<(u64, Option<u64>)>,
}

impl EditTrimmer {
    pub(crate) fn new(edit: Mp4Edit) -> Self {
        EditTrimmer { edit, window: None }
    }

    /// Trims `mono` (decoded at `rate`) to the part inside the presentation window.
    pub(crate) fn apply(&mut self, mono: &mut Vec<f32>, rate: u32) {
        let (skip, keep) = self.window.get_or_insert_with(|| {
            let frames = |s: f64| (s * f64::from(rate)).round() as u64;
            (frames(self.edit.skip_s), self.edit.keep_s.map(frames))
        });
        let drop = (*skip).min(mono.len() as u64) as usize;
        *skip -= drop as u64;
        mono.drain(..drop);
        if let Some(keep) = keep {
            let pass = (*keep).min(mono.len() as u64);
            *keep -= pass;
            mono.truncate(pass as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn header_v0(timescale: u32) -> Vec<u8> {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&timescale.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b
    }

    #[test]
    fn aac_priming_edit_is_read() {
        let mut elst = vec![0, 0, 0, 0, 0, 0, 0, 1];
        elst.extend_from_slice(&4000u32.to_be_bytes());
        elst.extend_from_slice(&1024u32.to_be_bytes());
        elst.extend_from_slice(&[0, 1, 0, 0]);
        let trak = [
            mp4_box(b"edts", &mp4_box(b"elst", &elst)),
            mp4_box(b"mdia", &mp4_box(b"mdhd", &header_v0(44_100))),
        ]
        .concat();
        let moov = [mp4_box(b"mvhd", &header_v0(1000)), mp4_box(b"trak", &trak)].concat();
        let file = [mp4_box(b"ftyp", b"M4A \0\0\0\0"), mp4_box(b"moov", &moov)].concat();
        let len = file.len() as u64;
        let edits = read_edits(&mut std::io::Cursor::new(file), len);
        assert_eq!(
            edits,
            vec![Some(Mp4Edit {
                skip_s: 1024.0 / 44_100.0,
                keep_s: Some(4.0)
            })]
        );
    }

    #[test]
    fn trimmer_drops_priming_and_padding_across_packets() {
        let mut t = EditTrimmer::new(Mp4Edit {
            skip_s: 3.0 / 10.0,
            keep_s: Some(0.5),
        });
        let mut out = Vec::new();
        for start in [0, 4, 8] {
            let mut packet: Vec<f32> = (start..start + 4).map(|i| i as f32).collect();
            t.apply(&mut packet, 10);
            out.extend(packet);
        }
        assert_eq!(out, vec![3.0, 4.0, 5.0, 6.0, 7.0]);
    }

    #[test]
    fn garbage_yields_no_edits() {
        let data = b"\0\0\0\x10moovgarbage!".to_vec();
        assert!(
            read_edits(&mut std::io::Cursor::new(data), 16)
                .iter()
                .all(Option::is_none)
        );
    }
}
