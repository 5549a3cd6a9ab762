//! Megatron-LM's indexed dataset (`MMapIndexedDataset`, now `IndexedDataset`, of
//! `megatron/core/datasets/indexed_dataset.py`): a `PREFIX.bin` with the tokens and a
//! `PREFIX.idx` that indexes it, which Megatron's GPT datasets read directly.
//!
//! `.idx`, all little-endian, as `_IndexWriter.__enter__` and `_IndexWriter.write`
//! write it (and `_IndexReader` reads it):
//!
//! | bytes | field |
//! |---|---|
//! | 9 | magic `b"MMIDIDX\x00\x00"` (`_INDEX_HEADER`) |
//! | 8 | version, u64 = 1 |
//! | 1 | dtype code, u8 (`DType`: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16) |
//! | 8 | sequence count, u64 = `len(sequence_lengths)` |
//! | 8 | document count, u64 = `len(document_indices)` (documents + 1) |
//! | 4 x sequences | `sequence_lengths`, int32: tokens per sequence |
//! | 8 x sequences | `sequence_pointers`, int64: byte offset of each sequence in `.bin` (running sum of length x itemsize, from 0) |
//! | 8 x (documents + 1) | `document_indices`, int64: 0, then after each document the number of sequences so far (document `d` is sequences `document_indices[d]..document_indices[d + 1]`) |
//!
//! No `sequence_modes` follow (those are only written for multimodal datasets).
//!
//! `.bin`: every sequence's tokens, concatenated in order, in the dtype. The dtype is
//! Megatron's `DType.optimal_dtype(vocab_size)`: uint16 when `vocab_size < 65500`,
//! else int32.

/// First bytes of a `.idx` (`_INDEX_HEADER`).
pub const IDX_MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// The `.idx` version Megatron writes and reads.
pub const IDX_VERSION: u64 = 1;
/// Megatron's `DType` code of int32.
pub const DTYPE_INT32: u8 = 4;
/// Megatron's `DType` code of uint16.
pub const DTYPE_UINT16: u8 = 8;

/// Megatron's `DType.optimal_dtype`: the code of uint16 when `vocab_size < 65500`,
/// else of int32.
pub fn dtype_for_vocab(vocab_size: usize) -> u8 {
    if vocab_size < 65_500 {
        DTYPE_UINT16
    } else {
        DTYPE_INT32
    }
}

/// Accumulates documents (each a list of token sequences) into the `.bin` and `.idx`
/// bytes of one Megatron indexed dataset.
///
/// ```
/// use speechmill_stages::shard::megatron::IndexedWriter;
/// let mut w = IndexedWriter::new(1000);
/// w.add_document(&[vec![1, 2, 3], vec![4]]).unwrap();
/// w.add_document(&[vec![5, 6]]).unwrap();
/// assert!(w.add_document(&[vec![1000]]).is_err());
/// let (bin, idx) = w.finish();
/// assert_eq!(bin.len(), 6 * 2); // uint16 tokens
/// assert_eq!(&idx[..9], b"MMIDIDX\x00\x00");
/// ```
#[derive(Debug, Clone)]
pub struct IndexedWriter {
    vocab_size: usize,
    dtype: u8,
    bin: Vec<u8>,
    sequence_lengths: Vec<i32>,
    sequence_pointers: Vec<i64>,
    document_indices: Vec<i64>,
}

impl IndexedWriter {
    /// An empty dataset for tokens `0..vocab_size` (dtype by [`dtype_for_vocab`]).
    pub fn new(vocab_size: usize) -> Self {
        IndexedWriter {
            vocab_size,
            dtype: dtype_for_vocab(vocab_size),
            bin: Vec::new(),
            sequence_lengths: Vec::new(),
            sequence_pointers: Vec::new(),
            document_indices: vec![0],
        }
    }

    /// Megatron's `DType` code of the tokens in `.bin` (8 uint16 or 4 int32).
    pub fn dtype_code(&self) -> u8 {
        self.dtype
    }

    fn itemsize(&self) -> usize {
        if self.dtype == DTYPE_UINT16 { 2 } else { 4 }
    }

    /// Appends one document of `sequences` (Megatron's `add_document`: each sequence an
    /// item, then the document's end). On an error nothing is added: a token not below
    /// the vocabulary size (or above int32), or a sequence longer than int32 allows.
    /// An empty document or sequence is kept as such (the format allows both).
    pub fn add_document(&mut self, sequences: &[Vec<u32>]) -> Result<(), String> {
        for (s, seq) in sequences.iter().enumerate() {
            if i32::try_from(seq.len()).is_err() {
                return Err(format!(
                    "megatron: sequence {s} of document {} has {} tokens, more than int32 holds",
                    self.document_indices.len() - 1,
                    seq.len()
                ));
            }
            if let Some(&t) = seq.iter().find(|&&t| t as usize >= self.vocab_size) {
                return Err(format!(
                    "megatron: token {t} is not below the vocabulary size {} (sequence {s} of \
                     document {})",
                    self.vocab_size,
                    self.document_indices.len() - 1
                ));
            }
            if self.dtype == DTYPE_INT32
                && let Some(&t) = seq.iter().find(|&&t| i32::try_from(t).is_err())
            {
                return Err(format!(
                    "megatron: token {t} does not fit int32 (vocabulary size {})",
                    self.vocab_size
                ));
            }
        }
        let itemsize = self.itemsize();
        for seq in sequences {
            self.sequence_pointers.push(self.bin.len() as i64);
            self.sequence_lengths.push(seq.len() as i32);
            self.bin.reserve(seq.len() * itemsize);
            if self.dtype == DTYPE_UINT16 {
                for &t in seq {
                    // Checked above: t < vocab_size < 65500.
                    self.bin.extend_from_slice(&(t as u16).to_le_bytes());
                }
            } else {
                for &t in seq {
                    // Checked above: t <= i32::MAX.
                    self.bin.extend_from_slice(&(t as i32).to_le_bytes());
                }
            }
        }
        self.document_indices
            .push(self.sequence_lengths.len() as i64);
        Ok(())
    }

    /// The `.bin` and `.idx` bytes (see the module docs for the layout).
    pub fn finish(self) -> (Vec<u8>, Vec<u8>) {
        let n = self.sequence_lengths.len();
        let mut idx = Vec::with_capacity(34 + 12 * n + 8 * self.document_indices.len());
        idx.extend_from_slice(IDX_MAGIC);
        idx.extend_from_slice(&IDX_VERSION.to_le_bytes());
        idx.push(self.dtype);
        idx.extend_from_slice(&(n as u64).to_le_bytes());
        idx.extend_from_slice(&(self.document_indices.len() as u64).to_le_bytes());
        for l in &self.sequence_lengths {
            idx.extend_from_slice(&l.to_le_bytes());
        }
        for p in &self.sequence_pointers {
            idx.extend_from_slice(&p.to_le_bytes());
        }
        for d in &self.document_indices {
            idx.extend_from_slice(&d.to_le_bytes());
        }
        (self.bin, idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a `.idx` holds, parsed independently of the writer.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        dtype: u8,
        lengths: Vec<i32>,
        pointers: Vec<i64>,
        doc_indices: Vec<i64>,
        /// documents -> sequences -> tokens, read from `.bin` through the pointers.
        documents: Vec<Vec<Vec<u32>>>,
    }

    fn parse(bin: &[u8], idx: &[u8]) -> Parsed {
        let u64_at = |o: usize| u64::from_le_bytes(idx[o..o + 8].try_into().unwrap());
        assert_eq!(&idx[..9], b"MMIDIDX\x00\x00");
        assert_eq!(u64_at(9), 1, "version");
        let dtype = idx[17];
        let n = u64_at(18) as usize;
        let d = u64_at(26) as usize;
        let mut o = 34;
        let lengths: Vec<i32> = (0..n)
            .map(|i| i32::from_le_bytes(idx[o + 4 * i..o + 4 * i + 4].try_into().unwrap()))
            .collect();
        o += 4 * n;
        let i64s = |o: usize, count: usize| -> Vec<i64> {
            (0..count)
                .map(|i| i64::from_le_bytes(idx[o + 8 * i..o + 8 * i + 8].try_into().unwrap()))
                .collect()
        };
        let pointers = i64s(o, n);
        o += 8 * n;
        let doc_indices = i64s(o, d);
        o += 8 * d;
        assert_eq!(o, idx.len(), "no bytes after document_indices");
        let size = match dtype {
            8 => 2,
            4 => 4,
            other => panic!("unexpected dtype {other}"),
        };
        let seq = |s: usize| -> Vec<u32> {
            let start = pointers[s] as usize;
            (0..lengths[s] as usize)
                .map(|i| {
                    let b = &bin[start + size * i..start + size * (i + 1)];
                    if size == 2 {
                        u32::from(u16::from_le_bytes(b.try_into().unwrap()))
                    } else {
                        i32::from_le_bytes(b.try_into().unwrap()) as u32
                    }
                })
                .collect()
        };
        let documents = doc_indices
            .windows(2)
            .map(|w| (w[0] as usize..w[1] as usize).map(seq).collect())
            .collect();
        Parsed {
            dtype,
            lengths,
            pointers,
            doc_indices,
            documents,
        }
    }

    fn sample() -> Vec<Vec<Vec<u32>>> {
        vec![
            vec![vec![1, 2, 3], vec![4]],
            vec![vec![5, 6]],
            vec![vec![7], vec![], vec![8, 9, 10, 11]],
        ]
    }

    #[test]
    fn megatron_uint16_every_field() {
        let mut w = IndexedWriter::new(32_000);
        assert_eq!(w.dtype_code(), 8);
        for doc in sample() {
            w.add_document(&doc).unwrap();
        }
        let (bin, idx) = w.finish();
        assert_eq!(bin.len(), 11 * 2);
        assert_eq!(idx.len(), 34 + 6 * 4 + 6 * 8 + 4 * 8);
        let p = parse(&bin, &idx);
        assert_eq!(p.dtype, 8);
        assert_eq!(p.lengths, [3, 1, 2, 1, 0, 4]);
        assert_eq!(p.pointers, [0, 6, 8, 12, 14, 14]);
        assert_eq!(p.doc_indices, [0, 2, 3, 6]);
        assert_eq!(p.documents, sample());
        // The raw bytes of the start, spelled out.
        assert_eq!(&bin[..6], [1, 0, 2, 0, 3, 0]);
        assert_eq!(&idx[9..18], [1, 0, 0, 0, 0, 0, 0, 0, 8]);
        assert_eq!(
            &idx[18..34],
            [6, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn megatron_int32_for_large_vocab() {
        assert_eq!(dtype_for_vocab(65_499), 8);
        assert_eq!(dtype_for_vocab(65_500), 4);
        let mut w = IndexedWriter::new(100_000);
        assert_eq!(w.dtype_code(), 4);
        let docs = vec![vec![vec![0, 65_535, 65_536, 99_999]], vec![vec![42]]];
        for d in &docs {
            w.add_document(d).unwrap();
        }
        let (bin, idx) = w.finish();
        assert_eq!(bin.len(), 5 * 4);
        let p = parse(&bin, &idx);
        assert_eq!(p.dtype, 4);
        assert_eq!(p.lengths, [4, 1]);
        assert_eq!(p.pointers, [0, 16]);
        assert_eq!(p.doc_indices, [0, 1, 2]);
        assert_eq!(p.documents, docs);
    }

    #[test]
    fn megatron_empty_dataset() {
        let (bin, idx) = IndexedWriter::new(10).finish();
        assert!(bin.is_empty());
        let p = parse(&bin, &idx);
        assert_eq!((p.lengths.len(), p.doc_indices), (0, vec![0]));
        assert!(p.documents.is_empty());
    }

    #[test]
    fn megatron_rejects_out_of_vocab_token_and_adds_nothing() {
        let mut w = IndexedWriter::new(500);
        w.add_document(&[vec![1, 2]]).unwrap();
        let e = w.add_document(&[vec![3], vec![4, 500, 5]]).unwrap_err();
        assert!(
            e.contains("token 500") && e.contains("vocabulary size 500"),
            "{e}"
        );
        assert!(e.contains("sequence 1 of document 1"), "{e}");
        let (bin, idx) = w.finish();
        let p = parse(&bin, &idx);
        assert_eq!(p.documents, [vec![vec![1, 2]]]);
        // int32 cannot hold tokens past i32::MAX, whatever the vocabulary.
        let mut w = IndexedWriter::new(usize::MAX);
        let e = w.add_document(&[vec![u32::MAX]]).unwrap_err();
        assert!(e.contains("does not fit int32"), "{e}");
    }

    /// Writes `PREFIX.bin`/`.idx` samples (uint16 and int32) for the numpy peer
    /// reader, `tests/peers/megatron_reader.py`, into `$SPEECHMILL_MEGATRON_SAMPLE_DIR`
    /// when set (kept), else into a scratch dir under the system temp dir (removed).
    #[test]
    fn megatron_writes_sample_files() {
        let keep = std::env::var_os("SPEECHMILL_MEGATRON_SAMPLE_DIR");
        let dir = keep
            .clone()
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("speechmill-megatron-{}", std::process::id()))
            });
        std::fs::create_dir_all(&dir).unwrap();
        for (name, vocab, docs) in [
            ("u16", 1000, sample()),
            (
                "i32",
                70_000,
                vec![vec![vec![69_999, 0, 65_535]], vec![vec![1], vec![2, 3]]],
            ),
        ] {
            let mut w = IndexedWriter::new(vocab);
            for d in &docs {
                w.add_document(d).unwrap();
            }
            let (bin, idx) = w.finish();
            std::fs::write(dir.join(format!("{name}.bin")), &bin).unwrap();
            std::fs::write(dir.join(format!("{name}.idx")), &idx).unwrap();
            assert_eq!(parse(&bin, &idx).documents, docs);
        }
        if keep.is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
