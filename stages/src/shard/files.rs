//! The bytes of a training shard, deterministic: the same samples give byte-identical
//! files. WebDataset samples are tar entries with fixed headers (mtime 0, mode 0644,
//! no owner); audio is FLAC (16 kHz mono, 16-bit); the Hugging Face Parquet shard
//! holds `audio` as `struct<bytes, path>` with the `huggingface` schema metadata that
//! makes `datasets` load it as an `Audio` feature.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryArray, RecordBatch, StringArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

/// The tar block size.
const BLOCK: usize = 512;

/// The sample rate of every shard's audio.
pub const SAMPLE_RATE: u32 = 16_000;

/// FLAC bytes of 16 kHz mono PCM16 little-endian samples.
pub fn flac(pcm16: &[u8]) -> Result<Vec<u8>, String> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let samples: Vec<i32> = pcm16
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as i32)
        .collect();
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|e| format!("FLAC encoder config: {e:?}"))?;
    let source = flacenc::source::MemSource::from_samples(&samples, 1, 16, SAMPLE_RATE as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| format!("FLAC encoding: {e:?}"))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| format!("FLAC encoding: {e:?}"))?;
    Ok(sink.as_slice().to_vec())
}

/// One tar entry (header and data padded to the block size) with fixed metadata.
fn tar_entry(out: &mut Vec<u8>, name: &str, data: &[u8]) -> Result<(), String> {
    let mut header = tar::Header::new_ustar();
    header
        .set_path(name)
        .map_err(|e| format!("tar entry {name}: {e}"))?;
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    Ok(())
}

/// The end of a tar archive: two zero blocks.
pub fn tar_end() -> Vec<u8> {
    vec![0; 2 * BLOCK]
}

/// One WebDataset sample, its files adjacent: `<key>.flac`, `<key>.json`, `<key>.txt`.
pub fn sample_entries(key: &str, flac: &[u8], json: &[u8], text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(flac.len() + json.len() + text.len() + 6 * BLOCK);
    tar_entry(&mut out, &format!("{key}.flac"), flac)?;
    tar_entry(&mut out, &format!("{key}.json"), json)?;
    tar_entry(&mut out, &format!("{key}.txt"), text.as_bytes())?;
    Ok(out)
}

/// A sample read back from [`sample_entries`]: (file name, data) in order.
pub fn read_entries(mut bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while bytes.len() >= BLOCK && bytes[..BLOCK].iter().any(|&b| b != 0) {
        let header = tar::Header::from_byte_slice(&bytes[..BLOCK]);
        let name = header
            .path()
            .map_err(|e| format!("staged sample: {e}"))?
            .to_string_lossy()
            .into_owned();
        let size = header.size().map_err(|e| format!("staged sample: {e}"))? as usize;
        let end = BLOCK + size;
        if bytes.len() < end {
            return Err(format!("staged sample {name}: truncated"));
        }
        out.push((name, bytes[BLOCK..end].to_vec()));
        bytes = &bytes[end.div_ceil(BLOCK) * BLOCK..];
    }
    Ok(out)
}

/// The `datasets` feature description of an Arrow type, or `None` when it has none.
fn feature(t: &DataType) -> Option<serde_json::Value> {
    let value = |dtype: &str| Some(serde_json::json!({ "dtype": dtype, "_type": "Value" }));
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => value("string"),
        DataType::Boolean => value("bool"),
        DataType::Int8 => value("int8"),
        DataType::Int16 => value("int16"),
        DataType::Int32 => value("int32"),
        DataType::Int64 => value("int64"),
        DataType::UInt8 => value("uint8"),
        DataType::UInt16 => value("uint16"),
        DataType::UInt32 => value("uint32"),
        DataType::UInt64 => value("uint64"),
        DataType::Float32 => value("float32"),
        DataType::Float64 => value("float64"),
        DataType::Binary | DataType::LargeBinary => value("binary"),
        DataType::List(f) | DataType::LargeList(f) => {
            Some(serde_json::json!({ "feature": feature(f.data_type())?, "_type": "List" }))
        }
        DataType::Struct(fields) => {
            let mut map = serde_json::Map::new();
            for f in fields {
                map.insert(f.name().clone(), feature(f.data_type())?);
            }
            Some(serde_json::Value::Object(map))
        }
        _ => None,
    }
}

/// The schema of a Parquet shard: `audio` then the label columns (those `datasets`
/// can describe), with the `huggingface` metadata.
pub fn parquet_schema(columns: &Fields) -> Schema {
    let audio = Field::new(
        "audio",
        DataType::Struct(Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("path", DataType::Utf8, true),
        ])),
        true,
    );
    let mut features = serde_json::Map::new();
    features.insert(
        "audio".into(),
        serde_json::json!({ "sampling_rate": SAMPLE_RATE, "_type": "Audio" }),
    );
    let mut fields = vec![audio];
    for f in columns {
        if let Some(desc) = feature(f.data_type()) {
            features.insert(f.name().clone(), desc);
            fields.push(f.as_ref().clone());
        }
    }
    let metadata = serde_json::json!({ "info": { "features": features } });
    Schema::new(fields).with_metadata(
        [("huggingface".to_string(), metadata.to_string())]
            .into_iter()
            .collect(),
    )
}

/// A Parquet shard of `rows` (the label columns, in sample order) and each sample's
/// FLAC bytes and file name.
pub fn parquet_shard(
    schema: &Schema,
    rows: &RecordBatch,
    audio: Vec<(String, Vec<u8>)>,
) -> Result<Vec<u8>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("parquet shard: {e}");
    let (paths, bytes): (Vec<String>, Vec<Vec<u8>>) = audio.into_iter().unzip();
    let DataType::Struct(audio_fields) = schema.field(0).data_type().clone() else {
        return Err("parquet shard: no audio struct".into());
    };
    let audio = StructArray::try_new(
        audio_fields,
        vec![
            Arc::new(BinaryArray::from_iter_values(bytes.iter())) as ArrayRef,
            Arc::new(StringArray::from(paths)),
        ],
        None,
    )
    .map_err(|e| fail(&e))?;
    let mut columns: Vec<ArrayRef> = vec![Arc::new(audio)];
    for f in schema.fields().iter().skip(1) {
        columns.push(
            rows.column_by_name(f.name())
                .ok_or_else(|| format!("parquet shard: column {} missing", f.name()))?
                .clone(),
        );
    }
    let schema = Arc::new(schema.clone());
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| fail(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by("speechmill".into())
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| fail(&e))?;
    writer.write(&batch).map_err(|e| fail(&e))?;
    writer.close().map_err(|e| fail(&e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_three_adjacent_entries_that_read_back() {
        let entries = sample_entries("abc_000001000", b"fLaC", b"{\"a\":1}", "hello").unwrap();
        assert_eq!(entries.len() % BLOCK, 0);
        let back = read_entries(&entries).unwrap();
        let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "abc_000001000.flac",
                "abc_000001000.json",
                "abc_000001000.txt"
            ]
        );
        assert_eq!(back[2].1, b"hello");
        // Fixed headers: the same sample gives the same bytes.
        assert_eq!(
            entries,
            sample_entries("abc_000001000", b"fLaC", b"{\"a\":1}", "hello").unwrap()
        );
    }

    #[test]
    fn flac_is_a_flac_stream_and_deterministic() {
        let pcm: Vec<u8> = (0..16_000i32)
            .flat_map(|i| (((i as f32 * 0.05).sin() * 8000.0) as i16).to_le_bytes())
            .collect();
        let a = flac(&pcm).unwrap();
        assert_eq!(&a[..4], b"fLaC");
        assert!(a.len() < pcm.len());
        assert_eq!(a, flac(&pcm).unwrap());
    }

    #[test]
    fn the_parquet_schema_declares_an_audio_feature() {
        let columns = Fields::from(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("dnsmos_ovrl", DataType::Float64, true),
        ]);
        let schema = parquet_schema(&columns);
        let meta: serde_json::Value =
            serde_json::from_str(&schema.metadata()["huggingface"]).unwrap();
        assert_eq!(meta["info"]["features"]["audio"]["_type"], "Audio");
        assert_eq!(meta["info"]["features"]["text"]["dtype"], "string");
        assert_eq!(schema.field(0).name(), "audio");
    }
}
