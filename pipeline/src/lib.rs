//! speechmill's pipeline: DAG files, fingerprints, the run store and the runner
//! that executes each node as a DataFusion plan and commits its output.
//!
//! This crate never names a stage. Stages implement [`stage::Stage`] and are put
//! in a [`stage::StageRegistry`]; the binary wires the registry to the runner:
//!
//! ```no_run
//! # async fn demo(registry: std::sync::Arc<speechmill_pipeline::StageRegistry>) -> speechmill_pipeline::Result<()> {
//! use speechmill_pipeline::{Dag, Progress, RunStore, Runner};
//! let dag = Dag::load("dags/demo.toml".as_ref(), &registry, &[])?;
//! let store = RunStore::open("store/demo").await?;
//! let outcomes = Runner::new(registry, store, Progress::stderr()).run(&dag, None).await?;
//! for o in outcomes {
//!     println!("{}: {} rows, {} rejected", o.name, o.marker.rows, o.marker.rejects);
//! }
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod dag;
pub mod error;
pub mod fingerprint;
pub mod inspect;
pub mod lease;
pub mod parts;
pub mod progress;
pub mod runner;
pub mod runs;
pub mod stage;
pub mod store;

pub use dag::{Dag, DagError, Override};
pub use error::{Error, Result};
pub use progress::Progress;
pub use runner::{NodeOutcome, NodeStatus, PlannedNode, Runner};
pub use stage::{ConfiguredStage, InputArity, Stage, StageContext, StageRegistry};
pub use store::RunStore;
