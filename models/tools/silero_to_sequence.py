#!/usr/bin/env python3
"""Convert Silero VAD v5/v6 (`silero_vad.onnx`) to a sequence graph: many chunks, one call.

    python3 silero_to_sequence.py SRC.onnx OUT.onnx [--conv-encoder]

Why: Silero's own ONNX graph advances each stream by ONE 512-sample chunk (32 ms at
16 kHz) per call, so a caller pays one onnxruntime call, with its fixed overhead, per
chunk: about 31 calls per second of audio. Only the LSTM state links one chunk to the
next, and the chunk's 64 samples of context are known in advance (they are audio), so
everything but the LSTM can run on all chunks at once, and the LSTM itself can step
through time inside one ONNX `LSTM` node. The output graph does exactly that. On one
thread it costs ~20 us per chunk (~40 us with --conv-encoder), against ~120-180 us per
call of SRC (one stream) or ~70 us per chunk (SRC with 7 streams per call).

SRC is Silero's graph (as shipped in the silero-vad wheel, opset 16): inputs `input`
[N, 576], `state` [2, N, 128], `sr` (int64 scalar); outputs `output` [N, 1], `stateN`
[2, N, 128]; an `If` on sr == 16000 selects the 16 kHz or the 8 kHz subgraph. Only the
16 kHz subgraph is read (its weights, checked against the ops around them); 8 kHz is
dropped. Needs numpy and onnx only. SRC that does not look like Silero v5/v6 is refused.
(The wheel also ships silero_vad_16k_sequence.onnx: the same weights over a sequence, but
one stream only, h and c as separate inputs, and Silero's Conv front end, ~3x slower than
the default one here; faster-whisper's silero_vad_v6.onnx has that layout, other weights.)

Output graph (T = chunks per stream, B = streams, N = T*B; all float32):
  in   input   [T, B, 576]   row [t, b] = stream b's chunk t: the 64 samples before it
                             (stream b's chunk t-1's last 64; zeros before the stream's
                             start), then its 512 new samples, in [-1, 1]
       state   [2, B, 128]   LSTM state before chunk 0, Silero's layout: state[0] = h,
                             state[1] = c (zeros at the start of a stream)
  out  output  [T, B]        speech probability of each chunk
       stateN  [2, B, 128]   LSTM state after chunk T-1 (feed it back as `state` to go on)
  Running it over T >= 1 chunks equals calling SRC T times with N = B (stateN fed back):
  see "Accuracy". T = 0 returns a zero stateN, not `state`: do not call it with no
  chunks. Streams are independent: B only batches them. Every stream advances T chunks,
  so a stream with fewer real chunks, zero-padded at the end, gets outputs for the
  padding (ignore them) and a stateN that is NOT its state after its last real chunk:
  batch equal-length runs, or keep such a stream's state from elsewhere.
  Intermediates take ~13 KB per chunk (T*B chunks in a call): cut long audio into calls
  of a few hundred to a few thousand chunks, carrying stateN (T*B ~ 100..1000 is also
  the fastest).

Graph (opset 17, IR 8; 35 nodes, 2.2 MB; 34 nodes, 1.2 MB with --conv-encoder):
  front end, on all N chunks at once (stateless):
    Reshape [N, 576] -> Pad (reflect, 64 on the right) [N, 640] -> Reshape [N, 10, 64]
    -> Gather the STFT frames as 64-sample blocks (n_fft 256, hop 128: frame f = blocks
    2f .. 2f+3) [N*4, 256] -> MatMul with the real and the imaginary halves of Silero's
    STFT basis [256, 129] each -> magnitude Sqrt(re*re + im*im) -> Transpose to Silero's
    [N, 129, 4] -> the 4 encoder convs (kernel 3, pad 1, strides 1, 2, 2, 1, Relu after
    each) over 4, 4, 2, 1 frames -> [N, 128]:
    default: on so few frames each conv is a fixed linear map of the whole chunk, so each
      becomes one Gemm over all N chunks, with the conv unrolled into a dense matrix
      [C_in*L_in, C_out*L_out] (zeros where a tap falls on the padding).
    --conv-encoder: Silero's Conv nodes as they are, with batch N. onnxruntime runs a
      Conv one tiny GEMM per batch item, which makes this front end ~2.5x slower.
  recurrence: Reshape [T, B, 128] -> LSTM (hidden 128; PyTorch's gate order i f g o
    reordered to ONNX's i o f c; bias = [b_ih, b_hh]; initial_h, initial_c = Split(state))
    -> Y [T, 1, B, 128]; stateN = Concat(Y_h, Y_c).
  decoder, on all N at once: Relu -> MatMul [128, 1] + bias -> Sigmoid -> [T, B]
    (Silero's 1x1 Conv; its ReduceMean over one value is dropped).

Accuracy, against SRC chunk by chunk on the same onnxruntime (1.32, x86-64), speech:
  The STFT as a MatMul gives bit-identical magnitudes, and the LSTM over T steps the same
  state as T one-step LSTMs. The dense encoder sums in another order than the Convs, and
  the LSTM cell state c (which reaches |c| ~ 50) integrates such rounding differences:
  default          probabilities within 2.2e-5 (bounded: 33 minutes in 62 calls of
                   1000 chunks, 0 decisions flipped), h within ~3e-5, c within ~8e-4.
  --conv-encoder   probabilities within 3e-7 (the decoder's MatMul), state bit-identical.
  For scale: SRC against itself with onnxruntime's graph optimizations off differs by
  2e-6 (probabilities) and 3e-5 (c); onnx's numpy reference runtime by 1.8e-5.

The file is deterministic (same SRC and flags give the same bytes) and carries
metadata_props: speechmill_layout = "silero-vad-sequence-v1", source_sha256,
sample_rate = 16000, chunk = 512, context = 64, encoder = "dense" or "conv". Before
saving, both graphs are run with onnx's reference evaluator (numpy) on a few chunks of
seeded noise, and the conversion fails if any probability or state differs by > 1e-4.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_graph import IR_VERSION, OPSET, ConvertError, GraphBuilder, sha256_file  # noqa: E402

LAYOUT = "silero-vad-sequence-v1"
SAMPLE_RATE = 16000
CHUNK = 512  # new samples per chunk at 16 kHz
CONTEXT = 64  # samples of the previous chunk prepended to each chunk
WIDTH = CONTEXT + CHUNK
HIDDEN = 128  # LSTM size; state is [2, B, HIDDEN]
N_FFT, HOP = 256, 128  # STFT as a strided conv over the chunk padded to 640 samples
STFT_PAD = 64  # reflect padding on the right
BLOCK = 64  # frames are gathered as blocks of this many samples (divides WIDTH, HOP, N_FFT)
N_BINS = N_FFT // 2 + 1  # 129
ENCODER_STRIDES = (1, 2, 2, 1)  # kernel 3, pad 1 each
TOLERANCE = 1e-4


def not_silero(path: str, why: str) -> ConvertError:
    return ConvertError(f"{path}: not a Silero VAD v5/v6 silero_vad.onnx graph ({why})")


# ---------------------------------------------------------------------- reading Silero
# Weights of the 16 kHz branch, by the suffix of their constant's name, and their shapes.
WEIGHTS = {
    "stft.forward_basis_buffer": (2 * N_BINS, 1, N_FFT),
    **{f"encoder.{i}.reparam_conv.{p}": s
       for i, (cin, cout) in enumerate([(N_BINS, 128), (128, 64), (64, 64), (64, 128)])
       for p, s in (("weight", (cout, cin, 3)), ("bias", (cout,)))},
    "decoder.rnn.weight_ih": (4 * HIDDEN, HIDDEN),
    "decoder.rnn.weight_hh": (4 * HIDDEN, HIDDEN),
    "decoder.rnn.bias_ih": (4 * HIDDEN,),
    "decoder.rnn.bias_hh": (4 * HIDDEN,),
    "decoder.decoder.2.weight": (1, HIDDEN, 1),
    "decoder.decoder.2.bias": (1,),
}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute if a.type != onnx.AttributeProto.GRAPH}


def _walk(graph: onnx.GraphProto):
    """Every node of `graph` and of its subgraphs, depth first."""
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _walk(a.g)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and "value" in _attrs(n):
            out[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
    return out


def read_silero(path: str) -> dict[str, np.ndarray]:
    """The 16 kHz branch's weights (float32, by WEIGHTS key), after checking that SRC has
    Silero v5/v6's interface and, around the weights, the ops this converter rebuilds."""
    try:
        m = onnx.load(path)
    except Exception as e:  # noqa: BLE001 (protobuf raises assorted errors)
        raise ConvertError(f"{path}: cannot read as ONNX ({e})") from e
    g = m.graph
    ins, outs = [i.name for i in g.input], [o.name for o in g.output]
    if ins != ["input", "state", "sr"] or outs != ["output", "stateN"]:
        raise not_silero(path, f"inputs {ins}, outputs {outs}; want input, state, sr -> output, stateN")
    top = _constants(g)
    branch = None
    for n in g.node:  # If(Equal(sr, 16000)): then = 16 kHz; If(Equal(sr, 8000)): else = 16 kHz
        if n.op_type != "Equal" or "sr" not in n.input:
            continue
        other = [top.get(x) for x in n.input if x != "sr"]
        rate = int(other[0]) if other and other[0] is not None and other[0].size == 1 else None
        for f in g.node:
            if f.op_type == "If" and f.input[0] == n.output[0] and rate in (8000, 16000):
                want = "then_branch" if rate == SAMPLE_RATE else "else_branch"
                branch = next(a.g for a in f.attribute if a.name == want)
    if branch is None:
        raise not_silero(path, "no If on sr == 16000 / 8000")

    consts = _constants(branch)
    weights: dict[str, np.ndarray] = {}
    for key, shape in WEIGHTS.items():
        hits = [v for k, v in consts.items() if k == key or k.endswith("__" + key) or k.endswith("/" + key)]
        if len(hits) != 1 or tuple(hits[0].shape) != shape:
            got = [tuple(h.shape) for h in hits]
            raise not_silero(path, f"16 kHz weight {key}: want one {shape}, found {got}")
        weights[key] = np.ascontiguousarray(hits[0], dtype=np.float32)

    # The ops around the weights: the STFT conv, its reflect padding, the 4 encoder convs,
    # one LSTM cell, the 1x1 decoder conv and a sigmoid.
    convs = [n for n in branch.node if n.op_type == "Conv"]
    pattern = [(N_FFT, HOP, [0, 0])] + [(3, s, [1, 1]) for s in ENCODER_STRIDES] + [(1, 1, [0, 0])]
    got = [(a.get("kernel_shape", [0])[0], a.get("strides", [1])[0], list(a.get("pads", [0, 0])))
           for a in map(_attrs, convs)]
    if got != pattern or any(a.get("group", 1) != 1 or a.get("dilations", [1]) != [1] for a in map(_attrs, convs)):
        raise not_silero(path, f"16 kHz convs {got}, want {pattern}")
    pads = [n for n in branch.node if n.op_type == "Pad"]
    pad_amount = [v for v in consts.values() if v.dtype == np.int64 and v.shape == (2,) and v.tolist() == [0, STFT_PAD]]
    if len(pads) != 1 or _attrs(pads[0]).get("mode") != b"reflect" or not pad_amount:
        raise not_silero(path, f"no reflect padding of {STFT_PAD} samples before the STFT")
    lstms = [n for n in _walk(branch) if n.op_type == "LSTM"]
    if not lstms or any(a.get("hidden_size") != HIDDEN or a.get("direction", b"forward") != b"forward"
                        or "activations" in a or "clip" in a for a in map(_attrs, lstms)):
        raise not_silero(path, f"want a plain forward LSTM of size {HIDDEN}")
    if not any(n.op_type == "Sigmoid" for n in branch.node):
        raise not_silero(path, "no Sigmoid in the 16 kHz branch")
    return weights


# ---------------------------------------------------------------------- graph building
class Graph(GraphBuilder):
    """The sequence graph being built."""

    def model(self, inputs, outputs, meta: dict[str, str], doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, initializer=list(self.inits.values()),
                                  doc_string=doc)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="speechmill silero_to_sequence", producer_version="1")
        m.ir_version = IR_VERSION
        for k, v in meta.items():
            m.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(m, full_check=True)
        return m


def conv_as_dense(w: np.ndarray, b: np.ndarray, l_in: int, stride: int, pad: int):
    """A Conv1d (weight [C_out, C_in, K], bias [C_out]) over l_in positions as one matrix:
    x [C_in*l_in] (channel-major, like the conv's [C_in, l_in] input) @ M [C_in*l_in,
    C_out*l_out] + repeat(b) = the conv's output [C_out, l_out], flattened. Taps on the
    zero padding are dropped. Channel-major keeps the sum in the conv's order (channel,
    then tap), which halves the rounding difference to it. Returns M, repeat(b), l_out."""
    c_out, c_in, k = w.shape
    l_out = (l_in + 2 * pad - k) // stride + 1
    m = np.zeros((c_in, l_in, c_out, l_out), dtype=np.float32)
    for lo in range(l_out):
        for j in range(k):
            li = lo * stride + j - pad
            if 0 <= li < l_in:
                m[:, li, :, lo] = w[:, :, j].T
    return m.reshape(c_in * l_in, c_out * l_out), np.repeat(b, l_out).astype(np.float32), l_out


def build(w: dict[str, np.ndarray], conv_encoder: bool = False) -> Graph:
    g = Graph("silero_vad_sequence")
    n_frames = (WIDTH + STFT_PAD - N_FFT) // HOP + 1  # 4

    # front end: all T*B chunks at once
    x = g.op("Reshape", ["input", g.const([-1, WIDTH])])  # [N, 576]
    x = g.op("Pad", [x, g.const([0, 0, 0, STFT_PAD])], mode="reflect")  # [N, 640]
    blocks = g.op("Reshape", [x, g.const([-1, (WIDTH + STFT_PAD) // BLOCK, BLOCK])])  # [N, 10, 64]
    per_frame, per_hop = N_FFT // BLOCK, HOP // BLOCK
    idx = np.array([[f * per_hop + j for j in range(per_frame)] for f in range(n_frames)], np.int64)
    frames = g.op("Gather", [blocks, g.init("stft.frame_blocks", idx)], axis=1)  # [N, 4, 4, 64]
    frames = g.op("Reshape", [frames, g.const([-1, N_FFT])])  # [N*4, 256]
    basis = w["stft.forward_basis_buffer"][:, 0, :]  # [258, 256]: real rows, then imaginary
    re = g.op("MatMul", [frames, g.init("stft.basis_re_t", basis[:N_BINS].T)])  # [N*4, 129]
    im = g.op("MatMul", [frames, g.init("stft.basis_im_t", basis[N_BINS:].T)])
    mag = g.op("Sqrt", [g.op("Add", [g.op("Mul", [re, re]), g.op("Mul", [im, im])])])  # [N*4, 129]
    h = g.op("Transpose", [g.op("Reshape", [mag, g.const([-1, n_frames, N_BINS])])], perm=[0, 2, 1])  # [N, 129, 4]
    length = n_frames
    if conv_encoder:  # Silero's own convs, batched over N
        for i, stride in enumerate(ENCODER_STRIDES):
            conv = g.op("Conv", [h, g.init(f"encoder.{i}.weight", w[f"encoder.{i}.reparam_conv.weight"]),
                                 g.init(f"encoder.{i}.bias", w[f"encoder.{i}.reparam_conv.bias"])],
                        kernel_shape=[3], pads=[1, 1], strides=[stride])
            h = g.op("Relu", [conv])
            length = (length + 2 - 3) // stride + 1
    else:  # each conv as one Gemm over all N chunks
        h = g.op("Reshape", [h, g.const([-1, N_BINS * n_frames])])  # [N, 129*4]
        for i, stride in enumerate(ENCODER_STRIDES):
            m, b, length = conv_as_dense(w[f"encoder.{i}.reparam_conv.weight"], w[f"encoder.{i}.reparam_conv.bias"],
                                         length, stride, 1)
            h = g.op("Relu", [g.op("Gemm", [h, g.init(f"encoder.{i}.dense", m), g.init(f"encoder.{i}.dense_bias", b)])])
    if length != 1:
        raise ConvertError(f"encoder ends with {length} frames, want 1")

    # recurrence over T, B streams in parallel
    b_dim = g.op("Slice", [g.op("Shape", ["input"]), g.const([1]), g.const([2])])  # [B]
    seq = g.op("Reshape", [h, g.op("Concat", [g.const([-1]), b_dim, g.const([HIDDEN])], axis=0)])  # [T, B, 128]
    h0, c0 = g.op("Split", ["state"], n_out=2, axis=0)  # state[0] = h, state[1] = c

    def gates(a: np.ndarray) -> np.ndarray:  # PyTorch's gate order i, f, g, o -> ONNX's i, o, f, c
        return np.concatenate([a[0:HIDDEN], a[3 * HIDDEN:4 * HIDDEN], a[HIDDEN:3 * HIDDEN]], axis=0)

    W = g.init("lstm.W", gates(w["decoder.rnn.weight_ih"])[None])
    R = g.init("lstm.R", gates(w["decoder.rnn.weight_hh"])[None])
    bias = np.concatenate([gates(w["decoder.rnn.bias_ih"]), gates(w["decoder.rnn.bias_hh"])])
    Bias = g.init("lstm.B", bias[None])
    y, yh, yc = g.op("LSTM", [seq, W, R, Bias, "", h0, c0], n_out=3, hidden_size=HIDDEN)
    g.op("Concat", [yh, yc], out=["stateN"], axis=0)  # [2, B, 128]

    # decoder: all T*B at once
    y = g.op("Relu", [g.op("Squeeze", [y, g.const([1])])])  # [T, B, 128]
    logit = g.op("MatMul", [y, g.init("decoder.weight", w["decoder.decoder.2.weight"][0])])  # [T, B, 1]
    logit = g.op("Add", [logit, g.init("decoder.bias", w["decoder.decoder.2.bias"])])
    g.op("Squeeze", [g.op("Sigmoid", [logit]), g.const([2])], out=["output"])  # [T, B]
    return g


# ---------------------------------------------------------------------- self-check
def chunk_rows(audio: np.ndarray) -> np.ndarray:
    """One stream's audio (float32, zero-padded to whole chunks) -> [T, 576] model rows."""
    a = np.pad(np.asarray(audio, np.float32), (0, -len(audio) % CHUNK)).reshape(-1, CHUNK)
    ctx = np.concatenate([np.zeros((1, CONTEXT), np.float32), a[:-1, -CONTEXT:]])
    return np.concatenate([ctx, a], axis=1)


def self_check(src: onnx.ModelProto, out: onnx.ModelProto, t: int = 6, b: int = 3) -> float:
    """Largest |difference| between `out` and `src` run chunk by chunk, on seeded noise,
    with onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(20240607)
    rows = np.stack([chunk_rows(rng.standard_normal(t * CHUNK).astype(np.float32) * 0.3 * (s + 1))
                     for s in range(b)], axis=1)  # [T, B, 576]
    state = (rng.standard_normal((2, b, HIDDEN)) * 0.5).astype(np.float32)
    ref, new = ReferenceEvaluator(src), ReferenceEvaluator(out)
    probs, st = [], state
    for i in range(t):
        p, st = ref.run(None, {"input": rows[i], "state": st, "sr": np.array(SAMPLE_RATE, np.int64)})
        probs.append(p[:, 0])
    got_p, got_st = new.run(None, {"input": rows, "state": state})
    return float(max(np.abs(got_p - np.stack(probs)).max(), np.abs(got_st - st).max()))


# ---------------------------------------------------------------------- main
def convert(src: str, dst: str, conv_encoder: bool = False, log=print) -> None:
    weights = read_silero(src)
    g = build(weights, conv_encoder)
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input", f32, ["T", "B", WIDTH]),
              helper.make_tensor_value_info("state", f32, [2, "B", HIDDEN])]
    outputs = [helper.make_tensor_value_info("output", f32, ["T", "B"]),
               helper.make_tensor_value_info("stateN", f32, [2, "B", HIDDEN])]
    meta = {"speechmill_layout": LAYOUT, "source_sha256": sha256_file(src), "sample_rate": str(SAMPLE_RATE),
            "chunk": str(CHUNK), "context": str(CONTEXT), "encoder": "conv" if conv_encoder else "dense"}
    m = g.model(inputs, outputs, meta, "Silero VAD, 16 kHz, T chunks x B streams per call: "
                "input [T, B, 576], state [2, B, 128] (h, c) -> output [T, B], stateN [2, B, 128]")
    diff = self_check(onnx.load(src), m)
    if not diff <= TOLERANCE:
        raise ConvertError(f"converted graph differs from {src} by {diff:.3g} (> {TOLERANCE}) on the self-check")
    tmp = dst + ".tmp"
    onnx.save(m, tmp)
    os.replace(tmp, dst)
    log(f"wrote {dst}: {'conv' if conv_encoder else 'dense'} encoder, {len(g.nodes)} nodes, "
        f"self-check max |diff| {diff:.2g}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="Silero VAD v5/v6 ONNX model (silero_vad.onnx)")
    ap.add_argument("out", help="where to write the sequence model")
    ap.add_argument("--conv-encoder", action="store_true",
                    help="keep Silero's encoder convs: LSTM state bit-identical to SRC's, ~2x slower")
    a = ap.parse_args()
    try:
        convert(a.src, a.out, a.conv_encoder, log=lambda s: print(f"[silero_to_sequence] {s}", flush=True))
    except ConvertError as e:
        print(f"silero_to_sequence: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
