#!/usr/bin/env python3
"""Split DNSMOS P.835 (`sig_bak_ovr.onnx`) into a front and a back graph.

    python3 dnsmos_split.py SRC.onnx FRONT.onnx BACK.onnx

Why: `dnsmos_local.py` scores 9.01 s windows every 1 s, so a clip of d seconds has
about d - 8 windows that overlap nine-fold, and 96 % of the model's work is its first
four 3x3 convolutions over the log-power spectrogram (frames of 320 samples every 160,
so a window starts exactly 100 frames after the one before it). Those convolutions are
the same wherever the frames come from, except within 4 frames of a window's edges,
where the window's zero padding reaches in. The caller runs FRONT once over the whole
clip, and again over a few frames at each window's edges, assembles each window's
features from those, and runs BACK per window: the same numbers as SRC per window, at
a fraction of the work.

FRONT  in  frames    f32 [N, R, 320]   R frames of 320 samples (SRC's own framing:
                                       frame r = samples [160 r, 160 r + 320))
       out features  f32 [N, 32, R, 161]  the fourth convolution's ReLU output
BACK   in  features  f32 [N, 32, 900, 161]  one window's features
       out output    f32 [N, 3]        raw SIG, BAK, OVRL, as SRC's output

SRC's own framing (two crops of the 144,160-sample window reshaped to [900, 160] and
concatenated) is left to the caller. Needs onnx only; a SRC whose graph is not the
one described is refused.
"""

import sys

import onnx
from onnx import helper, utils

CONCAT = "mos_estimator_logpow/concat:0"


def fail(msg: str) -> None:
    sys.exit(f"dnsmos_split: {msg}")


def main() -> None:
    if len(sys.argv) != 4:
        fail("usage: dnsmos_split.py SRC.onnx FRONT.onnx BACK.onnx")
    src, front_path, back_path = sys.argv[1:]
    model = onnx.load(src)
    graph = model.graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    # Two STFT convolutions (real, imaginary), then seven 2-D ones; the fourth 2-D
    # one's ReLU ends the front.
    if len(convs) != 9 or [i.name for i in graph.input] != ["input_1"]:
        fail(f"{src} is not DNSMOS sig_bak_ovr.onnx (9 Conv, input input_1)")
    conv4 = convs[5]
    relu = [n for n in graph.node if n.op_type == "Relu" and n.input[0] == conv4.output[0]]
    if len(relu) != 1 or not any(CONCAT in n.output for n in graph.node):
        fail(f"{src}: unexpected graph around {conv4.name}")
    features = relu[0].output[0]
    output = graph.output[0].name
    utils.extract_model(src, front_path, [CONCAT], [features], check_model=False)
    utils.extract_model(src, back_path, [features], [output], check_model=False)
    rename(front_path, {CONCAT: "frames", features: "features"},
           {"frames": ["N", "R", 320], "features": ["N", 32, "R", 161]})
    rename(back_path, {features: "features", output: "output"},
           {"features": ["N", 32, 900, 161], "output": ["N", 3]})


def rename(path: str, names: dict, shapes: dict) -> None:
    """Gives the graph's ends plain names and symbolic shapes; drops inner shapes
    (inferred for SRC's fixed 900 frames)."""
    model = onnx.load(path)
    g = model.graph
    for n in g.node:
        n.input[:] = [names.get(i, i) for i in n.input]
        n.output[:] = [names.get(o, o) for o in n.output]
    del g.value_info[:]
    for ends in (g.input, g.output):
        kept = [e for e in ends if e.name in names]
        del ends[:]
        for e in kept:
            name = names[e.name]
            ends.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shapes[name]))
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    main()
