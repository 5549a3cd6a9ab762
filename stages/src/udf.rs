//! Plumbing shared by speechmill's UDFs: running async work from a UDF, reading
//! string arguments, and building struct results.

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
