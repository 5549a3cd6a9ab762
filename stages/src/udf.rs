//! Plumbing shared by speechmill's UDFs: running async work from a UDF, reading
//! string and audio arguments, and building struct results.

use std::future::Future;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::logical_expr::ColumnarValue;

/// Runs a future to completion from synchronous UDF code. DataFusion calls UDFs
/// on tokio worker threads; `block_in_place` lets them wait on I/O there.
pub fn run_async<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|rt| rt.block_on(future))
                })
                .join()
        })
        .unwrap_or_else(|_| panic!("UDF worker thread panicked"))
        .unwrap_or_else(|e| panic!("cannot start a tokio runtime for a UDF: {e}")),
    }
}

/// A UDF argument that must be a string literal (configuration), parsed as JSON.
pub fn literal_json<T: serde::de::DeserializeOwned>(arg: &ColumnarValue, udf: &str) -> Result<T> {
    let text = match arg {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => s.clone(),
        _ => return exec_err!("{udf}: the configuration argument must be a string literal"),
    };
    serde_json::from_str(&text)
        .map_err(|e| DataFusionError::Execution(format!("{udf}: bad configuration: {e}")))
}

/// A string argument (column or scalar) as one optional string per row.
pub fn string_values(arg: &ColumnarValue, rows: usize) -> Result<Vec<Option<String>>> {
    let array: ArrayRef = arg.to_array(rows)?;
    let array =
        datafusion::arrow::compute::cast(&array, &datafusion::arrow::datatypes::DataType::Utf8)?;
    let strings = array.as_string::<i32>();
    Ok((0..strings.len())
        .map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_string()))
        .collect())
}

/// A string column from per-row values.
pub fn string_array(values: impl IntoIterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

/// The struct of one word: `{word, start_s, end_s, <last>}` (`asr` calls the last
/// `probability`, `align` and `tts` `score`).
pub fn word_fields(last: &str) -> datafusion::arrow::datatypes::Fields {
    use datafusion::arrow::datatypes::{DataType, Field, Fields};
    Fields::from(vec![
        Field::new("word", DataType::Utf8, false),
        Field::new("start_s", DataType::Float64, false),
        Field::new("end_s", DataType::Float64, false),
        Field::new(last, DataType::Float64, false),
    ])
}

/// One list of words per row, each word as [`word_fields`] has it; a row without
/// words (a reject) is a NULL list.
pub struct WordLists {
    fields: datafusion::arrow::datatypes::Fields,
    word: Vec<String>,
    start: Vec<f64>,
    end: Vec<f64>,
    score: Vec<f64>,
    offsets: Vec<i32>,
    valid: Vec<bool>,
}

impl WordLists {
    pub fn new(fields: datafusion::arrow::datatypes::Fields) -> Self {
        WordLists {
            fields,
            word: Vec::new(),
            start: Vec::new(),
            end: Vec::new(),
            score: Vec::new(),
            offsets: vec![0],
            valid: Vec::new(),
        }
    }

    /// The next row's words (`None`: a NULL list).
    pub fn push_row(&mut self, words: Option<impl IntoIterator<Item = (String, f64, f64, f64)>>) {
        self.valid.push(words.is_some());
        for (w, s, e, p) in words.into_iter().flatten() {
            self.word.push(w);
            self.start.push(s);
            self.end.push(e);
            self.score.push(p);
        }
        self.offsets.push(self.word.len() as i32);
    }

    pub fn finish(self) -> Result<ArrayRef> {
        use datafusion::arrow::array::{BooleanArray, Float64Array, ListArray, StructArray};
        use datafusion::arrow::datatypes::{DataType, Field};
        let items = StructArray::try_new(
            self.fields.clone(),
            vec![
                Arc::new(StringArray::from(self.word)) as ArrayRef,
                Arc::new(Float64Array::from(self.start)),
                Arc::new(Float64Array::from(self.end)),
                Arc::new(Float64Array::from(self.score)),
            ],
            None,
        )?;
        Ok(Arc::new(ListArray::try_new(
            Arc::new(Field::new("item", DataType::Struct(self.fields), true)),
            datafusion::arrow::buffer::OffsetBuffer::new(self.offsets.into()),
            Arc::new(items),
            Some(BooleanArray::from(self.valid).values().clone().into()),
        )?))
    }
}

/// PCM16 little-endian bytes as samples in [-1, 1), or why they are not audio.
pub fn pcm16(bytes: Option<&[u8]>) -> std::result::Result<Vec<f32>, String> {
    match bytes {
        None => Err("bad_audio: no audio".into()),
        Some([]) => Err("bad_audio: empty".into()),
        Some(b) if b.len() % 2 != 0 => Err("bad_audio: odd PCM16 byte count".into()),
        Some(b) => Ok(b
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]) as f32 / 32768.0)
            .collect()),
    }
}

/// `f` over `items` on `workers` threads, each taking the next item in order (so
/// items sorted longest first end together); the results in `items`' order. The
/// first error is returned.
pub fn parallel_map<T, R, F>(items: &[T], workers: usize, f: F) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    if workers <= 1 || items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<R>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(items.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_that_is_not_pcm16_gets_a_reason() {
        assert_eq!(pcm16(None).unwrap_err(), "bad_audio: no audio");
        assert_eq!(pcm16(Some(&[])).unwrap_err(), "bad_audio: empty");
        assert!(pcm16(Some(&[1, 2, 3])).unwrap_err().contains("odd"));
        assert_eq!(pcm16(Some(&[0, 0x80])).unwrap(), vec![-1.0]);
    }

    #[test]
    fn parallel_map_keeps_the_order_and_returns_the_first_error() {
        let items: Vec<u64> = (0..50).collect();
        let out = parallel_map(&items, 3, |&x| Ok(x * 2)).unwrap();
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let err = parallel_map(
            &items,
            3,
            |&x| {
                if x == 7 { exec_err!("bad {x}") } else { Ok(x) }
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad 7"), "{err}");
    }
}
