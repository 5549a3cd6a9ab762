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


# Ops that keep a lifted [N, C, 1, L] tensor lifted: elementwise on one tensor, and
# elementwise on two where both are lifted or the other is a scalar.
_UNARY = {"LeakyRelu", "Relu", "Tanh", "Sigmoid", "Identity", "Neg", "Exp", "Abs"}
_BINARY = {"Add", "Sub", "Mul", "Div"}


def lift_conv1d(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrites every 1-D Conv and ConvTranspose (3-D weights) as the same 2-D one over
    [N, C, 1, L], keeping the tensors between such convolutions 4-D through elementwise
    ops, so ONNX Runtime's blocked-layout (NCHWc) kernels run them and chain without
    reordering at every op (its NCHWc transformer only takes 4-D convolutions). The
    numbers are the same up to float summation order. Returns the model and how many
    convolutions were rewritten."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    scalars = {n for n, i in inits.items() if int(np.prod(i.dims)) <= 1 and len(i.dims) <= 1}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            t = n.attribute[0].t
            if int(np.prod(t.dims)) <= 1 and len(t.dims) <= 1:
                scalars.add(n.output[0])
    axis = "lift_conv1d_axis"
    graph.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), axis))
    lifted: dict[str, str] = {}  # 3-D name -> its 4-D twin
    squeezed: set[str] = set()  # lifted tensors whose 3-D name has been produced
    nodes: list[onnx.NodeProto] = []
    count = 0

    def flat(name: str) -> None:
        """Makes the 3-D `name` exist (from its 4-D twin) before the next node."""
        if name in lifted and name not in squeezed:
            nodes.append(helper.make_node("Squeeze", [lifted[name], axis], [name]))
            squeezed.add(name)

    def four_d(name: str) -> str:
        if name in lifted:
            return lifted[name]
        out = f"{name}__4d"
        nodes.append(helper.make_node("Unsqueeze", [name, axis], [out]))
        lifted[name] = out
        squeezed.add(name)
        return out

    for n in graph.node:
        weight = inits.get(n.input[1]) if len(n.input) > 1 else None
        if n.op_type in ("Conv", "ConvTranspose") and weight is not None and len(weight.dims) == 3:
            w = numpy_helper.to_array(weight)
            w4 = numpy_helper.from_array(w[:, :, None, :], f"{weight.name}__4d")
            graph.initializer.append(w4)
            attrs = {}
            for a in n.attribute:
                v = helper.get_attribute_value(a)
                if a.name in ("kernel_shape", "strides", "dilations", "output_padding"):
                    v = [1, *v]
                elif a.name == "output_shape":
                    v = [1, *v]
                elif a.name == "pads":
                    v = [0, v[0], 0, v[1]]
                attrs[a.name] = v
            x = four_d(n.input[0])
            out = f"{n.output[0]}__4d"
            nodes.append(helper.make_node(n.op_type, [x, w4.name, *n.input[2:]], [out],
                                          name=n.name, **attrs))
            lifted[n.output[0]] = out
            count += 1
            continue
        ins = list(n.input)
        if n.op_type in _UNARY and ins and ins[0] in lifted and len(n.output) == 1:
            lift = True
        elif n.op_type in _BINARY and len(ins) == 2 and any(i in lifted for i in ins) and all(
                i in lifted or i in scalars for i in ins):
            lift = True
        else:
            lift = False
        if lift:
            out = f"{n.output[0]}__4d"
            new = onnx.NodeProto()
            new.CopyFrom(n)
            new.input[:] = [lifted.get(i, i) for i in ins]
            new.output[:] = [out]
            nodes.append(new)
            lifted[n.output[0]] = out
            continue
        for i in ins:
            flat(i)
        nodes.append(n)
    for o in graph.output:
        flat(o.name)
    used = {i for n in nodes for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    # Shapes recorded for the 3-D tensors that no node makes any more.
    made = {o for n in nodes for o in n.output} | {i.name for i in graph.input}
    shapes = [v for v in graph.value_info if v.name in made]
    del graph.value_info[:]
    graph.value_info.extend(shapes)
    return model, count
