#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper checkpoint to the ONNX layout speechmill runs.

    python3 whisper_to_onnx.py CT2_DIR OUT_DIR [--int8]

CT2_DIR holds `model.bin` (spec WhisperSpec; float16, float32, bfloat16, int8 or int16
weights: everything is converted to float32), `config.json`, `tokenizer.json` and the
vocabulary (`vocabulary.json` or `vocabulary.txt`). Needs numpy and onnx only (no torch,
no onnxruntime).

Output, in OUT_DIR (any ONNX export laid out the same way works with speechmill):

encoder.onnx  (L = decoder layers, H = heads, dh = d_model / H, S = n_audio_ctx = 1500)
  in   mel             float32 [B, n_mels, 2*S]     log-mel of one 30 s window (3000 frames)
  out  cross_k         float32 [L, B, H, S, dh]     cross-attention keys
       cross_v         float32 [L, B, H, dh, S]     cross-attention values, transposed

decoder.onnx  (one step of the text decoder with a self-attention cache; B rows decode
              W windows, B a multiple of W: rows w*B/W .. (w+1)*B/W, a window's beams or
              samples, attend to window w, whose keys and values are then read once)
  in   tokens          int64   [B, T]               the new tokens (the prompt at first)
       past_self_k_0,  float32 [B, H, P, dh]        layer l's self-attention cache, P = 0 at
       past_self_v_0 …                              first; one input per layer, so a step's
                                                    outputs feed the next step as they are
       cross_k_0 …     float32 [W, H, S, dh]        layer l's slice of the encoder's cross_k,
       cross_k_{L-1}                                one input per layer: slicing a stacked
       cross_v_0 …     float32 [W, H, dh, S]        input inside the graph would copy it at
       cross_v_{L-1}                                every step (the runtime passes views)
  out  logits          float32 [B, T, n_vocab]      unnormalised, every new position
       present_self_k_l, present_self_v_l
                       float32 [B, H, P+T, dh]      past with the new tokens appended
       alignment_attn  float32 [B, A, T, S]         softmaxed cross-attention weights of the
                                                    A alignment heads, in whisper.json order
  Token t sits at position P+t and sees the cache plus new tokens up to itself.

encoder_int8.onnx, decoder_int8.onnx  (with --int8) the same graphs with every weight
  MatMul/Gemm as MatMulNBits (onnxruntime's com.microsoft domain): 8-bit symmetric
  weights with one scale per 128 values along K, accuracy_level 4 (activations are
  quantized per block too, so Whisper's activation outliers do not swamp them, and the
  dot products run in int8). Written by this script with numpy; no onnxruntime needed.
encoder_int8_rows.onnx  (with --int8) the encoder quantized as CTranslate2 does it:
  weights per output column, activations per row (per time frame) as the graph runs,
  through the standard MatMulInteger (u8 x s8), which onnxruntime runs on its integer
  GEMM kernels: AVX2, AVX-512 VNNI or AMX (Intel Xeon 4th gen on), whichever the CPU
  has; MatMulNBits has no AMX kernel. speechmill's precision "int8-rows" loads it with
  decoder_int8.onnx. On an AVX-512 VNNI CPU (AMD EPYC, no AMX) it was 18-22% faster
  than encoder_int8.onnx (tiny.en, base; one window, one thread) but its output 1.4x as
  far from fp32's (3.5-6.1% relative RMS on tiny.en against 2.5-4.3%; CTranslate2's own
  int8 encoder: 3.8-4.3%), so "int8" stays the default; the integer sums are exact, so
  it gives the same output on every CPU.

tokenizer.json  copied from CT2_DIR (text <-> ids for the Rust side).

whisper.json  everything the runtime needs, so it never reads the checkpoint:
  format             3
  source             {"dir", "model_bin_sha256", "spec", "revision", "binary_version",
                      "weight_dtype"}
  n_mels, n_audio_ctx, n_text_ctx, d_model, n_heads, n_enc_layers, n_dec_layers, n_vocab
  multilingual       n_vocab >= 51865 (openai-whisper's and CTranslate2's rule)
  alignment_heads    [[layer, head], ...]: config.json's; when it has none, every head of
                     the last half of the decoder layers (openai-whisper's default)
  suppress_ids       config.json's suppress_ids plus the special tokens faster-whisper
                     always suppresses (transcribe, translate, sot, sot_prev, sot_lm,
                     no_speech): suppressed at every step
  suppress_ids_begin config.json's (default [" ", eot]): suppressed at the first step
  tokens             {"sot", "eot", "transcribe", "translate", "no_timestamps",
                      "no_speech", "timestamp_begin", "sot_prev", "sot_lm", "space"}
                     looked up by their strings in the vocabulary. English-only models
                     number them differently (eot 50256, not 50257), and name no_speech
                     <|nocaptions|> instead of <|nospeech|>; timestamp_begin is
                     no_timestamps + 1 (<|0.00|>).
  languages          {"en": id, "zh": id, ...} language tokens in Whisper's order (by id);
                     empty for English-only models
  language_codes     the same codes as a list, in that order; lang_ids their ids
  files              {"encoder", "decoder", "encoder_int8", "decoder_int8" (when written),
                      "tokenizer"}; not encoder_int8_rows.onnx, which came later: every
                      graph carries these facts, so naming it would have changed every
                      file's hash and with it every fingerprint of labels made before

Each ONNX file carries the same facts as metadata_props (one key per whisper.json
field; lists and objects as JSON text), plus "speechmill_layout" = "whisper-v2".
Graphs are IR version 8, opset 17 with onnxruntime's com.microsoft ops (the encoders'
self-attention is its fused MultiHeadAttention, the int8 graphs' weights its 8-bit
MatMulNBits; tested with 1.32). The decoders keep every tensor of 64 KiB or more in
decoder.onnx.data / decoder_int8.onnx.data next to them, page-aligned, which speechmill
maps once and shares between its decoder sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ct2_reader import Ct2Model  # noqa: E402
from onnx_graph import IR_VERSION, OPSET, ConvertError, GraphBuilder, sha256_file  # noqa: E402

FORMAT = 3
LAYOUT = "whisper-v2"
MULTILINGUAL_MIN_VOCAB = 51865
EXTERNAL_DATA_BYTES = 1_800_000_000  # larger graphs keep their weights in a .data file
EXTERNAL_MIN_BYTES = 65536  # smaller tensors (norms, biases, shapes) stay in the graph
DATA_ALIGN = 4096  # a page: each tensor in a .data file starts on one
QUANT_BLOCK = 128  # int8 weights: one scale per 128 values along K
GELU_TANH, GELU = 2, 3  # CTranslate2 ActivationType values (only exact GELU is used by Whisper)


# ---------------------------------------------------------------------- checkpoint facts
def load_vocabulary(ct2_dir: str) -> list[str]:
    """Id -> token string, as CTranslate2 sees it (timestamps included)."""
    pj, pt = os.path.join(ct2_dir, "vocabulary.json"), os.path.join(ct2_dir, "vocabulary.txt")
    if os.path.exists(pj):
        with open(pj, encoding="utf-8") as f:
            vocab = json.load(f)
        if not isinstance(vocab, list):
            raise ConvertError(f"{pj}: expected a JSON list of tokens")
        return vocab
    if os.path.exists(pt):
        with open(pt, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return lines
    # Fall back on tokenizer.json: its BPE vocabulary plus the added tokens.
    with open(os.path.join(ct2_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    by_id.update({a["id"]: a["content"] for a in tok.get("added_tokens", [])})
    return [by_id.get(i, "") for i in range(max(by_id) + 1)]


def special_tokens(vocab: list[str], tokenizer_json: dict) -> dict[str, int]:
    ids: dict[str, int] = {}
    for i, t in enumerate(vocab):
        if t.startswith("<|") and t.endswith("|>"):
            ids.setdefault(t, i)
    # tokenizer.json must agree with the vocabulary (the Rust side decodes with it)
    for a in tokenizer_json.get("added_tokens", []):
        c = a["content"]
        if c in ids and ids[c] != a["id"]:
            raise ConvertError(f"tokenizer.json gives {c} id {a['id']}, the vocabulary {ids[c]}")

    def need(*names: str) -> int:
        for n in names:
            if n in ids:
                return ids[n]
        raise ConvertError(f"the vocabulary has none of {names}")

    tokens = {
        "sot": need("<|startoftranscript|>"),
        "eot": need("<|endoftext|>"),
        "transcribe": need("<|transcribe|>"),
        "translate": need("<|translate|>"),
        "no_timestamps": need("<|notimestamps|>"),
        # faster-whisper and CTranslate2: <|nospeech|>, else (English-only) <|nocaptions|>
        "no_speech": need("<|nospeech|>", "<|nocaptions|>"),
        "sot_prev": need("<|startofprev|>"),
        "sot_lm": need("<|startoflm|>"),
    }
    tokens["timestamp_begin"] = tokens["no_timestamps"] + 1
    if "<|0.00|>" in ids and ids["<|0.00|>"] != tokens["timestamp_begin"]:
        raise ConvertError(f"<|0.00|> is {ids['<|0.00|>']}, expected no_timestamps + 1")
    space = [i for i, t in enumerate(vocab) if t == "\u0120"]  # byte-level BPE's " "
    tokens["space"] = space[0] if space else 220
    return tokens


def language_tokens(vocab: list[str], tokens: dict[str, int]) -> list[tuple[str, int]]:
    """The language tokens, in Whisper's order: every <|xx|> between sot and translate."""
    out = []
    for i in range(tokens["sot"] + 1, tokens["translate"]):
        m = re.fullmatch(r"<\|([a-z]{2,3}|haw|yue)\|>", vocab[i])
        if not m:
            raise ConvertError(f"token {i} ({vocab[i]!r}) between sot and translate is not a language")
        out.append((m.group(1), i))
    return out


def whisper_facts(ct2_dir: str, model: Ct2Model) -> dict:
    if model.spec != "WhisperSpec":
        raise ConvertError(f"{model.path}: spec {model.spec!r}, expected WhisperSpec")
    with open(os.path.join(ct2_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(ct2_dir, "tokenizer.json"), encoding="utf-8") as f:
        tokenizer_json = json.load(f)

    names = list(model.names()) + list(model.aliases)
    n_enc = len({m.group(1) for n in names if (m := re.match(r"encoder/layer_(\d+)/", n))})
    n_dec = len({m.group(1) for n in names if (m := re.match(r"decoder/layer_(\d+)/", n))})
    n_vocab, d_model = model.raw("decoder/embeddings/weight").shape
    # Every Whisper size has 64-dim heads; older specs did not store num_heads.
    n_heads = model.scalar("encoder/num_heads", d_model // 64)
    if model.scalar("decoder/num_heads", n_heads) != n_heads:
        raise ConvertError("encoder and decoder head counts differ")
    if model.scalar("decoder/activation", GELU) != GELU or not model.scalar("decoder/pre_norm", 1) \
            or model.scalar("decoder/scale_embeddings", 0) or model.scalar("decoder/alibi", 0):
        raise ConvertError("not a standard Whisper decoder (activation, pre_norm, scale_embeddings, alibi)")

    vocab = load_vocabulary(ct2_dir)
    if len(vocab) != n_vocab:
        raise ConvertError(f"vocabulary has {len(vocab)} tokens, the embedding {n_vocab} rows")
    tokens = special_tokens(vocab, tokenizer_json)
    multilingual = n_vocab >= MULTILINGUAL_MIN_VOCAB
    langs = language_tokens(vocab, tokens) if multilingual else []

    align = [[int(l), int(h)] for l, h in config.get("alignment_heads") or []]
    if not align:
        align = [[l, h] for l in range(n_dec // 2, n_dec) for h in range(n_heads)]
    for l, h in align:
        if not (0 <= l < n_dec and 0 <= h < n_heads):
            raise ConvertError(f"alignment head {[l, h]} out of range")

    specials = [tokens[k] for k in ("transcribe", "translate", "sot", "sot_prev", "sot_lm", "no_speech")]
    suppress = sorted(set(int(i) for i in config.get("suppress_ids", [])) | set(specials))
    suppress_begin = [int(i) for i in config.get("suppress_ids_begin", [tokens["space"], tokens["eot"]])]

    return {
        "format": FORMAT,
        "source": {
            "dir": os.path.basename(os.path.normpath(ct2_dir)),
            "model_bin_sha256": sha256_file(model.path),
            "spec": model.spec,
            "revision": model.revision,
            "binary_version": model.binary_version,
            "weight_dtype": model.weight_dtype(),
        },
        "n_mels": int(model.raw("encoder/conv1/weight").shape[1]),
        "n_audio_ctx": int(model.raw("encoder/position_encodings/encodings").shape[0]),
        "n_text_ctx": int(model.raw("decoder/position_encodings/encodings").shape[0]),
        "d_model": int(d_model),
        "n_heads": int(n_heads),
        "n_enc_layers": n_enc,
        "n_dec_layers": n_dec,
        "n_vocab": int(n_vocab),
        "multilingual": multilingual,
        "alignment_heads": align,
        "suppress_ids": suppress,
        "suppress_ids_begin": suppress_begin,
        "tokens": tokens,
        "languages": {code: i for code, i in langs},
        "language_codes": [code for code, _ in langs],
        "lang_ids": [i for _, i in langs],
    }


# ---------------------------------------------------------------------- graph building
class Graph(GraphBuilder):
    """A graph over one checkpoint: its variables become float32 initializers."""

    def __init__(self, model: Ct2Model, name: str):
        super().__init__(name)
        self.model = model

    def weight(self, var: str) -> str:
        """A checkpoint variable as an initializer, shared when it is an alias."""
        target = self.model.target(var)
        name = target.replace("/", ".")
        if name not in self.inits:
            self.init(name, self.model.float32(target))
        return name

    def has_bias(self, prefix: str) -> bool:
        return prefix + "/bias" in self.model and bool(np.any(self.model.raw(prefix + "/bias")))

    def linear(self, x: str, prefix: str, name: str | None = None, scale_rows: int = 0, scale: float = 1.0) -> str:
        """x @ W^T + b. `scale_rows` > 0: the first rows of W and b are multiplied by `scale`
        (folds the attention query scale into the projection)."""
        w = self.model.float32(prefix + "/weight")
        b = self.model.float32(prefix + "/bias") if prefix + "/bias" in self.model else None
        if scale_rows:
            w[:scale_rows] *= scale
            if b is not None:
                b[:scale_rows] *= scale
        base = name or prefix.replace("/", ".")
        y = self.op("MatMul", [x, self.init(base + ".weight_t", w.T)])
        if b is not None and np.any(b):
            y = self.op("Add", [y, self.init(base + ".bias", b)])
        return y

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.op("LayerNormalization", [x, self.weight(prefix + "/gamma"), self.weight(prefix + "/beta")],
                       axis=-1, epsilon=1e-5)

    def gelu(self, x: str) -> str:
        # 0.5 * x * (1 + erf(x / sqrt 2)); onnxruntime fuses this into one Gelu kernel.
        e = self.op("Erf", [self.op("Mul", [x, self.const(1 / np.sqrt(2), np.float32)])])
        y = self.op("Mul", [x, self.op("Add", [e, self.const(1.0, np.float32)])])
        return self.op("Mul", [y, self.const(0.5, np.float32)])

    def ffn(self, x: str, prefix: str) -> str:
        h = self.layer_norm(x, prefix + "/layer_norm")
        h = self.linear(self.gelu(self.linear(h, prefix + "/linear_0")), prefix + "/linear_1")
        return self.op("Add", [x, h])

    def split_heads(self, x: str, n: int, H: int, dh: int) -> list[str]:
        """[B, T, n*H*dh] -> n tensors [B, T, H, dh]."""
        r = self.op("Reshape", [x, self.const([0, 0, n, H, dh])])
        return [self.op("Gather", [r, self.const(i)], axis=2) for i in range(n)]

    def merge_heads(self, x: str, D: int) -> str:
        """[B, H, T, dh] -> [B, T, D]."""
        t = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [t, self.const([0, 0, D])])

    def save(self, inputs, outputs, path: str, meta: dict[str, str], doc: str, weights_apart: bool = False) -> None:
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, initializer=list(self.inits.values()),
                                  doc_string=doc)
        opsets = [helper.make_opsetid("", OPSET)]
        if any(n.domain == "com.microsoft" for n in self.nodes):
            opsets.append(helper.make_opsetid("com.microsoft", 1))
        m = helper.make_model(graph, opset_imports=opsets,
                              producer_name="speechmill whisper_to_onnx", producer_version=str(FORMAT))
        m.ir_version = IR_VERSION
        for k, v in meta.items():
            m.metadata_props.add(key=k, value=v)
        save_checked(m, path, weights_apart)


def build_encoder(model: Ct2Model, f: dict) -> tuple[Graph, list, list]:
    g = Graph(model, "whisper_encoder")
    D, H, L, S = f["d_model"], f["n_heads"], f["n_dec_layers"], f["n_audio_ctx"]
    dh = D // H
    x = g.op("Conv", ["mel", g.weight("encoder/conv1/weight"), g.weight("encoder/conv1/bias")],
             kernel_shape=[3], pads=[1, 1], strides=[1])
    x = g.gelu(x)
    x = g.op("Conv", [x, g.weight("encoder/conv2/weight"), g.weight("encoder/conv2/bias")],
             kernel_shape=[3], pads=[1, 1], strides=[2])
    x = g.gelu(x)
    x = g.op("Transpose", [x], perm=[0, 2, 1])  # [B, S, D]
    x = g.op("Add", [x, g.weight("encoder/position_encodings/encodings")])
    for l in range(f["n_enc_layers"]):
        p = f"encoder/layer_{l}/self_attention"
        h = g.layer_norm(x, p + "/layer_norm")
        qkv = g.linear(h, p + "/linear_0", scale_rows=D, scale=dh ** -0.5)  # q pre-scaled
        # onnxruntime's fused MultiHeadAttention (com.microsoft): 10-15% less encoder time
        # on CPU than MatMul-Softmax-MatMul over split heads, same output within 1e-5.
        q, k, v = g.op("Split", [qkv, g.const([D, D, D])], n_out=3, axis=2)
        a = g.op("MultiHeadAttention", [q, k, v], domain="com.microsoft", num_heads=H, scale=1.0)
        x = g.op("Add", [x, g.linear(a, p + "/linear_1")])
        x = g.ffn(x, f"encoder/layer_{l}/ffn")
    x = g.layer_norm(x, "encoder/layer_norm")

    # Cross-attention keys/values of every decoder layer in one MatMul:
    # columns ordered (layer, k|v, head, dh).
    w = np.concatenate([model.float32(f"decoder/layer_{l}/attention/linear_1/weight") for l in range(L)], 0)
    b = np.concatenate([model.float32(f"decoder/layer_{l}/attention/linear_1/bias")
                        if f"decoder/layer_{l}/attention/linear_1/bias" in model else np.zeros(2 * D, np.float32)
                        for l in range(L)], 0)
    kv = g.op("Add", [g.op("MatMul", [x, g.init("decoder.cross_kv.weight_t", w.T)]), g.init("decoder.cross_kv.bias", b)])
    kv = g.op("Reshape", [kv, g.const([0, 0, L, 2, H, dh])])        # [B, S, L, 2, H, dh]
    k = g.op("Gather", [kv, g.const(0)], axis=3)                     # [B, S, L, H, dh]
    v = g.op("Gather", [kv, g.const(1)], axis=3)
    g.op("Transpose", [k], perm=[2, 0, 3, 1, 4], out=["cross_k"])    # [L, B, H, S, dh]
    g.op("Transpose", [v], perm=[2, 0, 3, 4, 1], out=["cross_v"])    # [L, B, H, dh, S]

    inputs = [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", f["n_mels"], 2 * S])]
    outputs = [helper.make_tensor_value_info("cross_k", TensorProto.FLOAT, [L, "batch", H, S, dh]),
               helper.make_tensor_value_info("cross_v", TensorProto.FLOAT, [L, "batch", H, dh, S])]
    return g, inputs, outputs


def build_decoder(model: Ct2Model, f: dict) -> tuple[Graph, list, list]:
    g = Graph(model, "whisper_decoder")
    D, H, L, S, V = f["d_model"], f["n_heads"], f["n_dec_layers"], f["n_audio_ctx"], f["n_vocab"]
    A = len(f["alignment_heads"])
    dh = D // H
    shape_tokens = g.op("Shape", ["tokens"])
    T = g.op("Gather", [shape_tokens, g.const(1)], axis=0)                 # scalar
    T1 = g.op("Unsqueeze", [T, g.const([0])])                              # [1]
    P = g.op("Gather", [g.op("Shape", ["past_self_k_0"]), g.const(2)], axis=0)
    W1 = g.op("Gather", [g.op("Shape", ["cross_k_0"]), g.const([0])], axis=0)  # [1] windows
    total = g.op("Add", [P, T])
    positions = g.op("Range", [P, total, g.const(1)])                        # [T]
    x = g.op("Gather", [g.weight("decoder/embeddings/weight"), "tokens"], axis=0)
    x = g.op("Add", [x, g.op("Gather", [g.weight("decoder/position_encodings/encodings"), positions], axis=0)])
    x_shape = g.op("Shape", [x])                                             # [B, T, D]
    # Cross-attention folds the rows of a window (its beams) into the query axis:
    # [B, T, D] -> [W, H, (B/W)*T, dh], so each window's keys and values are read once.
    q_windows = g.op("Concat", [W1, g.const([-1, H, dh])], axis=0)
    # causal mask [T, P+T]: key j is visible to the query at position p iff j <= p
    keys = g.op("Range", [g.const(0), total, g.const(1)])
    hidden = g.op("Greater", [g.op("Unsqueeze", [keys, g.const([0])]), g.op("Unsqueeze", [positions, g.const([1])])])
    mask = g.op("Where", [hidden, g.const(-np.inf, np.float32), g.const(0.0, np.float32)])

    align_by_layer: dict[int, list[int]] = {}
    for l, h in f["alignment_heads"]:
        align_by_layer.setdefault(l, []).append(h)
    align_parts, align_order = [], []
    for l in range(L):
        p = f"decoder/layer_{l}/self_attention"
        h = g.layer_norm(x, p + "/layer_norm")
        q, k, v = g.split_heads(g.linear(h, p + "/linear_0", scale_rows=D, scale=dh ** -0.5), 3, H, dh)
        q = g.op("Transpose", [q], perm=[0, 2, 1, 3])                       # [B, H, T, dh]
        k = g.op("Concat", [f"past_self_k_{l}", g.op("Transpose", [k], perm=[0, 2, 1, 3])], axis=2,
                 out=[f"present_self_k_{l}"])
        v = g.op("Concat", [f"past_self_v_{l}", g.op("Transpose", [v], perm=[0, 2, 1, 3])], axis=2,
                 out=[f"present_self_v_{l}"])
        scores = g.op("Add", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), mask])
        a = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        x = g.op("Add", [x, g.linear(g.merge_heads(a, D), p + "/linear_1")])

        p = f"decoder/layer_{l}/attention"
        h = g.layer_norm(x, p + "/layer_norm")
        q = g.linear(h, p + "/linear_0", scale_rows=D, scale=dh ** -0.5)
        # Keys and values stay on the left of both products ([S, dh] @ [dh, n] and
        # [dh, S] @ [S, n], n = beams*T): the runtime packs only the small right side.
        q = g.op("Transpose", [g.op("Reshape", [q, q_windows])], perm=[0, 2, 3, 1])  # [W, H, dh, n]
        probs_t = g.op("Softmax", [g.op("MatMul", [f"cross_k_{l}", q])], axis=2)    # [W, H, S, n]
        a = g.op("Transpose", [g.op("MatMul", [f"cross_v_{l}", probs_t])], perm=[0, 3, 1, 2])  # [W, n, H, dh]
        x = g.op("Add", [x, g.linear(g.op("Reshape", [a, x_shape]), p + "/linear_2")])
        if l in align_by_layer:
            heads = g.op("Gather", [probs_t, g.const(align_by_layer[l])], axis=1)    # [W, A_l, S, n]
            align_parts.append(g.op("Transpose", [heads], perm=[0, 1, 3, 2]))
            align_order += [(l, hh) for hh in align_by_layer[l]]
        x = g.ffn(x, f"decoder/layer_{l}/ffn")
    x = g.layer_norm(x, "decoder/layer_norm")

    # logits = x @ E^T (+ bias): Gemm with transB shares the embedding initializer.
    proj = "decoder/projection"
    gemm_in = [g.op("Reshape", [x, g.const([-1, D])]), g.weight(proj + "/weight" if proj + "/weight" in model
                                                               else "decoder/embeddings/weight")]
    if g.has_bias(proj):
        gemm_in.append(g.weight(proj + "/bias"))
    logits = g.op("Gemm", gemm_in, transB=1)
    B = g.op("Gather", [shape_tokens, g.const([0])], axis=0)
    g.op("Reshape", [logits, g.op("Concat", [B, T1, g.const([V])], axis=0)], out=["logits"])

    # Alignment heads: [W, A, beams*T, S] -> [B, A, T, S], in config.json's order.
    wanted = [tuple(a) for a in f["alignment_heads"]]
    cat = g.op("Concat", align_parts, axis=1) if len(align_parts) > 1 else align_parts[0]
    if align_order != wanted:  # config.json interleaves layers
        cat = g.op("Gather", [cat, g.const([align_order.index(a) for a in wanted])], axis=1)
    per_row = g.op("Reshape", [cat, g.op("Concat", [W1, g.const([A, -1]), T1, g.const([S])], axis=0)])
    per_row = g.op("Transpose", [per_row], perm=[0, 2, 1, 3, 4])                  # [W, beams, A, T, S]
    g.op("Reshape", [per_row, g.op("Concat", [B, g.const([A]), T1, g.const([S])], axis=0)],
         out=["alignment_attn"])

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [helper.make_tensor_value_info("tokens", i64, ["batch", "T"]),
              *[helper.make_tensor_value_info(f"past_self_{kv}_{l}", f32, ["batch", H, "past", dh])
                for l in range(L) for kv in "kv"],
              *[helper.make_tensor_value_info(f"cross_k_{l}", f32, ["windows", H, S, dh]) for l in range(L)],
              *[helper.make_tensor_value_info(f"cross_v_{l}", f32, ["windows", H, dh, S]) for l in range(L)]]
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch", "T", V]),
               *[helper.make_tensor_value_info(f"present_self_{kv}_{l}", f32, ["batch", H, "total", dh])
                 for l in range(L) for kv in "kv"],
               helper.make_tensor_value_info("alignment_attn", f32, ["batch", A, "T", S])]
    return g, inputs, outputs


def save_checked(m: onnx.ModelProto, path: str, weights_apart: bool = False) -> None:
    """Checks and writes `m`. With `weights_apart` (the decoders), and for any graph
    that protobuf's 2 GB cannot hold, every tensor of at least EXTERNAL_MIN_BYTES goes
    to <file>.data next to it, each at an offset that is a multiple of DATA_ALIGN:
    speechmill maps that file and hands its tensors to ONNX Runtime as initializers
    shared by every session of the graph (one copy of the decoder's weights however
    many threads decode), and a page-aligned tensor is one the runtime can map too."""
    if not weights_apart and sum(t.ByteSize() for t in m.graph.initializer) < EXTERNAL_DATA_BYTES:
        onnx.checker.check_model(m)
        onnx.save(m, path)
        return
    location = os.path.basename(path) + ".data"
    with open(path + ".data", "wb") as data:
        for t in m.graph.initializer:
            if not t.HasField("raw_data"):
                t.raw_data = numpy_helper.to_array(t).tobytes()
                for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                    t.ClearField(field)
            if len(t.raw_data) < EXTERNAL_MIN_BYTES:
                continue
            data.write(b"\0" * (-data.tell() % DATA_ALIGN))
            offset = data.tell()
            data.write(t.raw_data)
            external_data_helper.set_external_data(t, location, offset=offset, length=len(t.raw_data))
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
    onnx.save(m, path)
    onnx.checker.check_model(path)


# ---------------------------------------------------------------------- driver
def metadata(facts: dict) -> dict[str, str]:
    meta = {"speechmill_layout": LAYOUT}
    for k, v in facts.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
    return meta


def replace_nodes(g: onnx.GraphProto, nodes: list[onnx.NodeProto], new_inits: dict[str, onnx.TensorProto]) -> None:
    """Gives `g` the rewritten `nodes`, drops the initializers no node reads any more
    (the float weights a quantizer replaced) and appends `new_inits`."""
    used = {i for n in nodes for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    g.ClearField("node")
    g.node.extend(nodes)
    g.ClearField("initializer")
    g.initializer.extend(kept + list(new_inits.values()))


def quantize_int8(src: str, dst: str, weights_apart: bool = False) -> None:
    """Rewrites every MatMul and Gemm with a weight initializer as MatMulNBits (8-bit,
    blocks of QUANT_BLOCK along K, symmetric, scale per block) with accuracy_level 4:
    onnxruntime then quantizes activations per block too, which keeps Whisper's
    activation outliers (plain per-tensor dynamic quantization loses 20-30% of the
    encoder's output to them) and runs int8 dot products."""
    m = onnx.load(src)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    nodes: list[onnx.NodeProto] = []
    new_inits: dict[str, onnx.TensorProto] = {}
    for n in g.node:
        w_name = n.input[1] if len(n.input) > 1 else None
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        weight = inits.get(w_name)
        gemm = n.op_type == "Gemm" and attrs.get("transB") == 1 and not attrs.get("transA") \
            and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        if weight is None or len(weight.dims) != 2 or not (n.op_type == "MatMul" or gemm):
            nodes.append(n)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        w_nk = w if gemm else w.T                                    # [N, K]: one row per output
        N, K = w_nk.shape
        blocks = -(-K // QUANT_BLOCK)
        padded = np.zeros((N, blocks * QUANT_BLOCK), np.float32)
        padded[:, :K] = w_nk
        padded = padded.reshape(N, blocks, QUANT_BLOCK)
        scale = np.abs(padded).max(axis=2) / 127.0
        scale[scale == 0] = 1.0
        q = (np.clip(np.rint(padded / scale[:, :, None]), -127, 127) + 128).astype(np.uint8)
        q_name, s_name = f"{w_name}.q8", f"{w_name}.q8_scales"
        if q_name not in new_inits:
            new_inits[q_name] = numpy_helper.from_array(q, q_name)
            new_inits[s_name] = numpy_helper.from_array(scale.astype(np.float32), s_name)
        out = n.output[0]
        has_bias = gemm and len(n.input) > 2 and n.input[2]
        mm_out = out + "_nobias" if has_bias else out
        nodes.append(helper.make_node("MatMulNBits", [n.input[0], q_name, s_name], [mm_out], name=n.name + "_q8",
                                      domain="com.microsoft", K=K, N=N, bits=8, block_size=QUANT_BLOCK,
                                      accuracy_level=4))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, n.input[2]], [out], name=n.name + "_bias"))
    replace_nodes(g, nodes, new_inits)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    save_checked(m, dst, weights_apart)


def quantize_rows_int8(src: str, dst: str) -> None:
    """Rewrites every MatMul with a 2-D weight initializer W [K, N] as int8 with
    CTranslate2's scheme: W per output column (scale = max |column| / 127, symmetric),
    the activations x [.., K] per row when the graph runs (scale = max |row| / 127, stored
    as u8 with zero point 128), then y = MatMulInteger(x_u8, W_s8) * row scale * column
    scale. Per-row scales keep Whisper's activation outliers to their own frames.
    onnxruntime runs MatMulInteger u8 x s8 on its integer GEMM kernels (AVX2, AVX-512
    VNNI, AMX); see encoder_int8_rows.onnx in the header."""
    m = onnx.load(src)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    nodes: list[onnx.NodeProto] = []
    new_inits: dict[str, onnx.TensorProto] = {}

    def const(name: str, a: np.ndarray) -> str:
        if name not in new_inits:
            new_inits[name] = numpy_helper.from_array(a, name)
        return name

    max_q = const("int8.max_q", np.array(127.0, np.float32))
    tiny = const("int8.tiny", np.array(1e-12, np.float32))  # an all-zero row keeps scale > 0
    offset = const("int8.offset", np.array(128.0, np.float32))
    zero_point = const("int8.zero_point", np.array(128, np.uint8))
    for n in g.node:
        weight = inits.get(n.input[1]) if n.op_type == "MatMul" and len(n.input) == 2 else None
        if weight is None or len(weight.dims) != 2:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)  # [K, N]
        col_scale = np.abs(w).max(axis=0) / 127.0
        col_scale[col_scale == 0] = 1.0
        q = np.clip(np.rint(w / col_scale), -127, 127).astype(np.int8)
        q_name = const(f"{weight.name}.s8", q)
        s_name = const(f"{weight.name}.s8_scales", col_scale.astype(np.float32))
        x, p = n.input[0], f"{n.name or n.output[0]}_int8"

        def op(op_type: str, inputs: list[str], suffix: str, **attrs) -> str:
            out = f"{p}.{suffix}"
            nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
            return out

        row_max = op("ReduceMax", [op("Abs", [x], "abs")], "row_max", axes=[-1], keepdims=1)
        row_scale = op("Div", [op("Max", [row_max, tiny], "row_max_pos"), max_q], "row_scale")
        rounded = op("Round", [op("Div", [x, row_scale], "scaled")], "rounded")
        x_u8 = op("Cast", [op("Add", [rounded, offset], "shifted")], "x_u8", to=TensorProto.UINT8)
        acc = op("Cast", [op("MatMulInteger", [x_u8, q_name, zero_point], "acc_i32")], "acc", to=TensorProto.FLOAT)
        rows = op("Mul", [acc, row_scale], "row_scaled")
        nodes.append(helper.make_node("Mul", [rows, s_name], [n.output[0]], name=f"{p}.out"))
    replace_nodes(g, nodes, new_inits)
    save_checked(m, dst)


def convert(ct2_dir: str, out_dir: str, int8: bool = False, log=print) -> dict:
    t0 = time.perf_counter()
    model = Ct2Model(ct2_dir)
    facts = whisper_facts(ct2_dir, model)
    log(f"read {model.path}: {facts['source']['weight_dtype']} weights, {facts['n_enc_layers']}+"
        f"{facts['n_dec_layers']} layers, d_model {facts['d_model']}, vocab {facts['n_vocab']}, "
        f"multilingual {facts['multilingual']} ({time.perf_counter() - t0:.1f}s)")
    facts["files"] = {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "tokenizer": "tokenizer.json"}
    if int8:
        facts["files"]["encoder_int8"] = "encoder_int8.onnx"
        facts["files"]["decoder_int8"] = "decoder_int8.onnx"
    meta = metadata(facts)
    os.makedirs(out_dir, exist_ok=True)

    t = time.perf_counter()
    g, i, o = build_encoder(model, facts)
    g.save(i, o, os.path.join(out_dir, "encoder.onnx"), meta, "Whisper encoder: mel -> cross-attention K/V")
    del g
    g, i, o = build_decoder(model, facts)
    g.save(i, o, os.path.join(out_dir, "decoder.onnx"), meta, "Whisper decoder step with self-attention cache",
           weights_apart=True)
    del g
    log(f"wrote encoder.onnx, decoder.onnx ({time.perf_counter() - t:.1f}s)")
    if int8:
        t = time.perf_counter()
        encoder = os.path.join(out_dir, "encoder.onnx")
        quantize_int8(encoder, os.path.join(out_dir, "encoder_int8.onnx"))
        quantize_rows_int8(encoder, os.path.join(out_dir, "encoder_int8_rows.onnx"))
        quantize_int8(os.path.join(out_dir, "decoder.onnx"), os.path.join(out_dir, "decoder_int8.onnx"),
                      weights_apart=True)
        log(f"wrote encoder_int8.onnx, encoder_int8_rows.onnx, decoder_int8.onnx ({time.perf_counter() - t:.1f}s)")
    shutil.copyfile(os.path.join(ct2_dir, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "whisper.json.tmp"), "w", encoding="utf-8") as fh:
        json.dump(facts, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.replace(os.path.join(out_dir, "whisper.json.tmp"), os.path.join(out_dir, "whisper.json"))
    log(f"done in {time.perf_counter() - t0:.1f}s: {out_dir}")
    return facts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ct2_dir", help="CTranslate2 Whisper model directory (model.bin, config.json, tokenizer.json)")
    ap.add_argument("out_dir", help="where to write encoder.onnx, decoder.onnx, whisper.json, tokenizer.json")
    ap.add_argument("--int8", action="store_true",
                    help="also write encoder_int8.onnx, encoder_int8_rows.onnx and decoder_int8.onnx")
    a = ap.parse_args()
    try:
        convert(a.ct2_dir, a.out_dir, a.int8, log=lambda s: print(f"[whisper_to_onnx] {s}", flush=True))
    except ConvertError as e:
        print(f"whisper_to_onnx: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
