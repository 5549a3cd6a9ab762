//! The pipeline's error type: every variant renders as one line that names the
//! file, node or field at fault.

use crate::dag::DagError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dag(#[from] DagError),
    #[error("{0}")]
    Store(String),
    /// Talking to a Ballista scheduler or executor went wrong.
    #[error("{0}")]
    Cluster(String),
    #[error("node `{node}`: {message}")]
    Node { node: String, message: String },
    #[error("{}", one_line(&.0.to_string()))]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{}", one_line(&.0.to_string()))]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("{}", one_line(&.0.to_string()))]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error while running `node`.
    pub fn node(node: &str, message: impl std::fmt::Display) -> Self {
        Error::Node {
            node: node.to_string(),
            message: one_line(&message.to_string()),
        }
    }

    /// This error as one of `node`; an error that already names its node (a stage's
    /// own) is kept as it is, so the node is not named twice.
    pub fn in_node(self, node: &str) -> Self {
        match self {
            Error::Node { .. } => self,
            other => Error::node(node, other),
        }
    }
}

/// Collapses a multi-line message (DataFusion wraps errors in context lines) to one.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_that_names_its_node_is_not_named_twice() {
        let own = Error::node("segment", "Silero VAD: model file missing").in_node("segment");
        assert_eq!(
            own.to_string(),
            "node `segment`: Silero VAD: model file missing"
        );
        let other = Error::Store("disk full".into()).in_node("asr");
        assert_eq!(other.to_string(), "node `asr`: disk full");
    }
}
