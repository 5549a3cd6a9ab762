"""A tiny character CTC model with the interface of a wav2vec2 ONNX export, for the
`align` stage's user-model path (tests/align.rs).

    python tiny_ctc_model.py OUT_DIR SYMBOL...

Writes OUT_DIR/model.onnx and OUT_DIR/vocab.json. The graph takes `input_values`
f32 [batch, samples] and `attention_mask` i64 [batch, samples] (unused, as many
exports have it) and gives `logits` [batch, frames, symbols], one frame per 320
samples (20 ms; samples a multiple of 320):
the logit of symbol k is -50 * |mean of the frame's samples - 0.1 k|, so audio
holding the level 0.1 k for a frame "says" symbol k there.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    out = Path(sys.argv[1])
    symbols = sys.argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    codes = numpy_helper.from_array(
        (0.1 * np.arange(len(symbols))).astype(np.float32), "codes"
    )
    shape = numpy_helper.from_array(np.array([0, -1, 320], dtype=np.int64), "frame_shape")
    scale = numpy_helper.from_array(np.array(-50.0, dtype=np.float32), "scale")
    nodes = [
        helper.make_node("Reshape", ["input_values", "frame_shape"], ["frames"]),
        helper.make_node("ReduceMean", ["frames"], ["level"], axes=[2], keepdims=1),
        helper.make_node("Sub", ["level", "codes"], ["distance"]),
        helper.make_node("Abs", ["distance"], ["absolute"]),
        helper.make_node("Mul", ["absolute", "scale"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_ctc",
        [
            helper.make_tensor_value_info("input_values", TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "samples"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "frames", len(symbols)])],
        [codes, shape, scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out / "model.onnx")
    (out / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}))


if __name__ == "__main__":
    main()
