//! The weights of one ONNX graph, shared by every session built from it.
//!
//! A graph whose large tensors live in an external data file (`<graph>.onnx.data`, as
//! `models/tools/whisper_to_onnx.py` writes the Whisper decoders) is opened here once:
//! the data file is mapped read-only, each external tensor becomes an ONNX Runtime
//! value over the mapped bytes, and every session built with [`SharedWeights::apply`]
//! takes those values as its initializers (ONNX Runtime's `AddInitializer`: used in
//! place, never copied) and one pre-packed weights container, so the blocked layouts
//! the CPU kernels pack weights into exist once too. After the last session is built,
//! [`SharedWeights::release_pages`] gives the mapped pages that packing read back to the
//! kernel: the file's bytes are then read again only where a kernel uses a weight
//! unpacked (an embedding's gathered rows), on demand.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use ort::AsPointer;
use ort::memory::{Allocator, MemoryInfo};
use ort::session::builder::{PrepackedWeights, SessionBuilder};
use ort::value::{DynValue, TensorElementType};
use prost::Message;

use super::error::{ModelError, Result, io_error, one_line};

/// The parts of ONNX's `ModelProto` that locate its initializers (onnx.proto's field
/// numbers; prost skips every other field).
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// `TensorProto.DataLocation.EXTERNAL`
const EXTERNAL: i32 = 1;

/// An ONNX `TensorProto.DataType` as ONNX Runtime's element type and its size in bytes.
fn element_type(data_type: i32) -> Option<(TensorElementType, usize)> {
    use TensorElementType::*;
    Some(match data_type {
        1 => (Float32, 4),
        2 => (Uint8, 1),
        3 => (Int8, 1),
        4 => (Uint16, 2),
        5 => (Int16, 2),
        6 => (Int32, 4),
        7 => (Int64, 8),
        10 => (Float16, 2),
        11 => (Float64, 8),
        12 => (Uint32, 4),
        13 => (Uint64, 8),
        16 => (Bfloat16, 2),
        _ => return None,
    })
}

/// One graph's external tensors, mapped, as values every session of the graph shares.
pub struct SharedWeights {
    /// `(initializer name, value over mapped bytes)`.
    values: Vec<(String, Arc<DynValue>)>,
    prepacked: PrepackedWeights,
    /// The mapped data files, unmapped when this is dropped: after `values` (fields
    /// drop in order), and after every session built with [`Self::apply`] (its owner's
    /// business).
    maps: Vec<Mmap>,
    graph: PathBuf,
}

impl std::fmt::Debug for SharedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWeights")
            .field("graph", &self.graph)
            .field("tensors", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl SharedWeights {
    /// The external tensors of the ONNX graph at `graph`; `None` when it has none (its
    /// weights are inside the graph file, and each session reads its own copy).
    pub fn open(graph: &Path) -> Result<Option<Self>> {
        let bad = |message: String| ModelError::ModelLoad {
            path: graph.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(graph).map_err(io_error(graph))?;
        let model = ModelProto::decode(bytes.as_slice())
            .map_err(|e| bad(format!("not an ONNX model: {}", one_line(e))))?;
        let dir = graph.parent().unwrap_or(Path::new("."));
        // The values below are made through ONNX Runtime: it must be loaded from the
        // cache first (ort would otherwise look for the library on the default path).
        super::session::environment()?;
        let mut files: HashMap<String, Mmap> = HashMap::new();
        let mut values = Vec::new();
        let allocator = Allocator::default();
        let cpu = MemoryInfo::default();
        for tensor in model.graph.map(|g| g.initializer).unwrap_or_default() {
            if tensor.data_location != EXTERNAL {
                continue;
            }
            let entry = |key: &str| {
                tensor
                    .external_data
                    .iter()
                    .find(|e| e.key == key)
                    .map(|e| e.value.as_str())
            };
            let name = &tensor.name;
            let location = entry("location").ok_or_else(|| {
                bad(format!(
                    "initializer `{name}`: external data without a location"
                ))
            })?;
            let number = |key: &str| -> Result<usize> {
                entry(key).map_or(Ok(0), |v| {
                    v.parse().map_err(|_| {
                        bad(format!("initializer `{name}`: {key} `{v}` is not a number"))
                    })
                })
            };
            let (offset, length) = (number("offset")?, number("length")?);
            let (ty, size) = element_type(tensor.data_type).ok_or_else(|| {
                bad(format!(
                    "initializer `{name}`: data type {} is not supported",
                    tensor.data_type
                ))
            })?;
            let shape = tensor.dims.clone();
            let count = shape.iter().try_fold(1usize, |n, &d| {
                usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
            });
            let want = count.and_then(|n| n.checked_mul(size));
            if want != Some(length) || offset % size != 0 {
                return Err(bad(format!(
                    "initializer `{name}`: {length} bytes at offset {offset} do not hold {shape:?} of {size}-byte values"
                )));
            }
            if !files.contains_key(location) {
                let path = dir.join(location);
                let file = File::open(&path)
                    .map_err(|_| ModelError::MissingFile { path: path.clone() })?;
                // SAFETY: the model cache's files are written once, by setup, and
                // replaced only by moving a new directory in: nothing truncates or
                // rewrites a file under a live mapping.
                let map = unsafe { Mmap::map(&file) }.map_err(io_error(&path))?;
                files.insert(location.to_string(), map);
            }
            let map = &files[location];
            if offset.checked_add(length).is_none_or(|end| end > map.len()) {
                return Err(bad(format!(
                    "initializer `{name}`: bytes {offset}..{} are past the end of {location} ({} bytes)",
                    offset + length,
                    map.len()
                )));
            }
            let data = map[offset..offset + length].as_ptr();
            let value = tensor_over(&cpu, &allocator, data, length, &shape, ty)
                .map_err(|e| bad(format!("initializer `{name}`: {}", one_line(e))))?;
            values.push((name.clone(), Arc::new(value)));
        }
        if values.is_empty() {
            return Ok(None);
        }
        Ok(Some(SharedWeights {
            values,
            prepacked: PrepackedWeights::new(),
            maps: files.into_values().collect(),
            graph: graph.to_path_buf(),
        }))
    }

    /// How many tensors the sessions share.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always false: [`open`](Self::open) gives `None` for a graph without external data.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `builder` with every shared tensor as an initializer and the shared pre-packed
    /// weights container. Sessions built from it read the mapped bytes: the owner of
    /// this value drops them before it.
    pub(crate) fn apply(
        &self,
        mut builder: SessionBuilder,
    ) -> std::result::Result<SessionBuilder, String> {
        for (name, value) in &self.values {
            builder = builder
                .with_initializer(name, Arc::clone(value))
                .map_err(|e| format!("initializer `{name}`: {e}"))?;
        }
        builder
            .with_prepacked_weights(&self.prepacked)
            .map_err(|e| e.to_string())
    }

    /// Hands the mapped pages back to the kernel once every session is built: packing
    /// read most of them, and what a kernel still reads unpacked is read again from
    /// the page cache on demand.
    pub fn release_pages(&self) {
        for map in &self.maps {
            // SAFETY: a private read-only file mapping: dropping its pages loses nothing,
            // a later read faults the file's bytes back in.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

/// An ONNX Runtime tensor over `length` bytes at `data` that it does not own.
fn tensor_over(
    cpu: &MemoryInfo,
    allocator: &Allocator,
    data: *const u8,
    length: usize,
    shape: &[i64],
    ty: TensorElementType,
) -> ort::Result<DynValue> {
    let mut value: *mut ort::sys::OrtValue = std::ptr::null_mut();
    // SAFETY: `data` points at `length` readable bytes that outlive the value (the
    // mapping is held by `SharedWeights` and by the sessions' owners); ONNX Runtime only
    // reads an initializer it was given with AddInitializer.
    unsafe {
        ort::Error::result_from_status((ort::api().CreateTensorWithDataAsOrtValue)(
            cpu.ptr(),
            data.cast_mut().cast(),
            length,
            shape.as_ptr(),
            shape.len(),
            ty.into(),
            &mut value,
        ))?;
    }
    let value = std::ptr::NonNull::new(value)
        .ok_or_else(|| ort::Error::new("CreateTensorWithDataAsOrtValue gave no value"))?;
    // SAFETY: a tensor value just created; the allocator is the CPU one its memory
    // info names (ort asks for one to hand out tensor values).
    Ok(unsafe { DynValue::from_ptr(value, Some(allocator)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, dims: &[i64], external: Option<(&str, usize, usize)>) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: 1,
            name: name.into(),
            external_data: external
                .map(|(location, offset, length)| {
                    [
                        ("location", location.to_string()),
                        ("offset", offset.to_string()),
                        ("length", length.to_string()),
                    ]
                    .into_iter()
                    .map(|(key, value)| StringStringEntryProto {
                        key: key.into(),
                        value,
                    })
                    .collect()
                })
                .unwrap_or_default(),
            data_location: if external.is_some() { EXTERNAL } else { 0 },
        }
    }

    fn write_graph(dir: &Path, initializer: Vec<TensorProto>) -> PathBuf {
        let model = ModelProto {
            graph: Some(GraphProto { initializer }),
        };
        let path = dir.join("g.onnx");
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        path
    }

    #[test]
    fn a_graph_with_its_weights_inside_shares_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let graph = write_graph(dir.path(), vec![tensor("w", &[2, 2], None)]);
        assert!(SharedWeights::open(&graph).unwrap().is_none());
    }

    #[test]
    fn external_tensors_are_mapped_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut data = vec![0u8; 4096];
        data.extend(&values);
        std::fs::write(dir.path().join("g.onnx.data"), &data).unwrap();
        let graph = write_graph(
            dir.path(),
            vec![
                tensor("inside", &[1], None),
                tensor("w", &[2, 3], Some(("g.onnx.data", 4096, 24))),
            ],
        );
        let shared = SharedWeights::open(&graph)
            .unwrap()
            .expect("one external tensor");
        assert_eq!(shared.len(), 1);
        let (name, value) = &shared.values[0];
        assert_eq!(name, "w");
        let (shape, read) = value.try_extract_tensor::<f32>().unwrap();
        assert_eq!(&**shape, &[2, 3]);
        assert_eq!(read, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(read.as_ptr().cast::<u8>(), shared.maps[0][4096..].as_ptr());
        shared.release_pages();
        assert_eq!(value.try_extract_tensor::<f32>().unwrap().1[5], 6.0);
    }

    #[test]
    fn a_tensor_past_the_end_of_its_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("g.onnx.data"), [0u8; 16]).unwrap();
        let graph = write_graph(
            dir.path(),
            vec![tensor("decoder.w", &[2, 3], Some(("g.onnx.data", 0, 24)))],
        );
        let e = SharedWeights::open(&graph).unwrap_err().to_string();
        assert!(e.contains("decoder.w") && e.contains("g.onnx"), "{e}");
        let missing = write_graph(
            dir.path(),
            vec![tensor("w", &[1], Some(("gone.data", 0, 4)))],
        );
        let e = SharedWeights::open(&missing).unwrap_err().to_string();
        assert!(e.contains("gone.data"), "{e}");
    }
}
