#!/usr/bin/env python3
"""Expose a Piper voice's phoneme durations as a second output.

    python3 piper_durations.py VOICE.onnx OUT.onnx

Why: Piper's VITS graph predicts how many decoder frames each input id lasts
(`w_ceil`, the output of its one `Ceil` node) and expands the ids by them before
decoding, so the durations give every phoneme's, and so every word's, place in the
audio exactly (piper-tts's own patch_voice_with_alignment.py exposes the same
tensor). OUT is VOICE with that tensor added as output `durations` (f32 [1, 1, ids]:
frames per input id; a frame is the decoder's hop, 256 samples for Piper's voices);
the audio is unchanged. speechmill loads `<voice>.durations.onnx` beside a voice
when it is there. Needs onnx only; a graph without exactly one Ceil is refused.

OUT also runs faster: its 1-D convolutions (nearly all of the voice's work, most of
it in the decoder) are rewritten as 2-D ones (`onnx_graph.lift_conv1d`), which ONNX
Runtime runs with its blocked-layout kernels: 8-13 % less time per sentence on one
thread, the audio equal to VOICE's within 1e-5.
"""

import sys

import onnx
from onnx import TensorProto, helper
from onnx_graph import lift_conv1d


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: piper_durations.py VOICE.onnx OUT.onnx")
    src, out = sys.argv[1:]
    model = onnx.load(src)
    graph = model.graph
    ceil = [n for n in graph.node if n.op_type == "Ceil"]
    if len(ceil) != 1:
        sys.exit(f"piper_durations: {src} has {len(ceil)} Ceil nodes, want 1 (a Piper VITS voice)")
    graph.output.append(
        helper.make_tensor_value_info(ceil[0].output[0], TensorProto.FLOAT, None)
    )
    # The output's name as callers know it: an Identity, so the graph stays the same.
    graph.output[-1].name = "durations"
    graph.node.append(helper.make_node("Identity", [ceil[0].output[0]], ["durations"]))
    model, lifted = lift_conv1d(model)
    if lifted == 0:
        sys.exit(f"piper_durations: {src} has no 1-D convolutions (a Piper VITS voice has)")
    onnx.save(model, out)


if __name__ == "__main__":
    main()
