//! How speechmill's own plan node travels to the scheduler and executors: the
//! [`PartWriterExec`] as a tagged JSON of its target, everything else through
//! Ballista's codec. Client, scheduler and executors all use this codec.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::parts::{PartTarget, PartWriterExec};

/// Marks an encoded [`PartWriterExec`]; Ballista's nodes are protobuf messages,
/// which never start with these bytes.
const PART_WRITER_TAG: &[u8] = b"speechmill.part_writer.v1\0";

/// Ballista's codec plus speechmill's plan nodes.
#[derive(Debug, Default)]
pub struct SpeechmillCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for SpeechmillCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(json) = buf.strip_prefix(PART_WRITER_TAG) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let target: PartTarget = serde_json::from_slice(json).map_err(|e| {
            DataFusionError::Internal(format!("cannot decode a PartWriterExec: {e}"))
        })?;
        let [input] = inputs else {
            return Err(DataFusionError::Internal(
                "PartWriterExec takes exactly one input".into(),
            ));
        };
        let writer = PartWriterExec::new(input.clone(), target)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(writer))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(writer) = node.downcast_ref::<PartWriterExec>() else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        buf.extend_from_slice(PART_WRITER_TAG);
        serde_json::to_writer(&mut *buf, writer.target())
            .map_err(|e| DataFusionError::Internal(format!("cannot encode a PartWriterExec: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;

    use super::*;

    #[test]
    fn a_part_writer_travels_to_executors_with_its_target() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("reject_reason", DataType::Utf8, true),
        ]));
        let target = PartTarget {
            store: "s3://bucket/store".into(),
            node: "asr".into(),
            fingerprint: "0123456789abcdef".into(),
        };
        let input = Arc::new(EmptyExec::new(schema).with_partitions(3));
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(PartWriterExec::new(input, target.clone()).unwrap());
        let codec = SpeechmillCodec::default();
        let proto = PhysicalPlanNode::try_from_physical_plan(plan, &codec).unwrap();
        let ctx = SessionContext::new().task_ctx();
        let decoded = proto.try_into_physical_plan(&ctx, &codec).unwrap();
        let writer = decoded
            .downcast_ref::<PartWriterExec>()
            .expect("a PartWriterExec comes back");
        assert_eq!(writer.target(), &target);
        assert_eq!(writer.properties().partitioning.partition_count(), 3);
    }
}
