"""A tiny speech tokenizer with the interface of CosyVoice's S3Tokenizer ONNX export,
and its reference tokens, for tokenize's ONNX path (tests/interleaved.rs).

    python tiny_speech_tokenizer.py model OUT.onnx
    python tiny_speech_tokenizer.py tokens WAV...    # JSON list of token lists

The graph takes `feats` f32 [1, 128, frames] (Whisper's 128-bin log-mel) and
`feats_length` int32 [1], and gives `tokens` int64 [1, frames // 4] (25 Hz): per
group of four frames, floor(100 * mean over bins and frames + 1000). `tokens`
computes the same from faster-whisper's FeatureExtractor(feature_size=128) in numpy.
"""

import json
import sys

import numpy as np


def model(out):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["feats"], ["per_frame"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["per_frame"], ["pooled"], kernel_shape=[4], strides=[4]),
        helper.make_node("Mul", ["pooled", "hundred"], ["scaled"]),
        helper.make_node("Add", ["scaled", "thousand"], ["shifted"]),
        helper.make_node("Floor", ["shifted"], ["floored"]),
        helper.make_node("Cast", ["floored"], ["ints"], to=TensorProto.INT64),
        helper.make_node("Squeeze", ["ints", "axis1"], ["tokens"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_speech_tokenizer",
        [
            helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "frames"]),
            helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "n"])],
        [
            numpy_helper.from_array(np.array(100.0, np.float32), "hundred"),
            numpy_helper.from_array(np.array(1000.0, np.float32), "thousand"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, out)


def tokens(paths):
    import soundfile
    from faster_whisper.feature_extractor import FeatureExtractor

    fe = FeatureExtractor(feature_size=128)
    out = []
    for p in paths:
        audio, rate = soundfile.read(p, dtype="float32")
        assert rate == 16000, rate
        mel = fe(audio)
        mel = mel[:, : mel.shape[-1] - 1]
        per_frame = mel.mean(axis=0)
        groups = per_frame[: len(per_frame) // 4 * 4].reshape(-1, 4).mean(axis=1)
        out.append([int(t) for t in np.floor(groups * 100 + 1000)])
    print(json.dumps(out))


if __name__ == "__main__":
    {"model": lambda: model(sys.argv[2]), "tokens": lambda: tokens(sys.argv[2:])}[sys.argv[1]]()
