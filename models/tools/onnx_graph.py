"""What speechmill's model converters share (numpy + onnx only): the ONNX versions they
write, their error type, file hashing, and a small graph builder.

    from onnx_graph import OPSET, IR_VERSION, ConvertError, GraphBuilder, sha256_file
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 17
IR_VERSION = 8


class ConvertError(RuntimeError):
    """A checkpoint or model a converter cannot convert; its message is one line."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class GraphBuilder:
    """Nodes and initializers of one ONNX graph, with fresh names and deduplicated
    constants; subclasses add the layers of their model."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.counter = 0
        self.consts: dict[tuple, str] = {}

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, out: list[str] | None = None, **attrs):
        outs = out or [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.fresh("n_" + op_type), **attrs))
        return outs[0] if len(outs) == 1 else outs

    def init(self, name: str, array: np.ndarray) -> str:
        if name in self.inits:
            raise ConvertError(f"duplicate initializer {name}")
        self.inits[name] = numpy_helper.from_array(np.array(array, order="C"), name)  # keeps 0-d shapes
        return name

    def const(self, value, dtype=np.int64) -> str:
        a = np.asarray(value, dtype=dtype)
        key = (a.dtype.str, a.shape, a.tobytes())
        if key not in self.consts:
            self.consts[key] = self.init(self.fresh("const"), a)
        return self.consts[key]
