"""Read CTranslate2 model files (`model.bin`) with numpy only.

File layout (little-endian; see CTranslate2's `model_spec.py` and `models/model.cc`):

    u32 binary_version                              (1..6 are understood here)
    if version >= 2: string spec_name, u32 spec_revision
    u32 n_variables, then for each variable:
        string name
        u8 rank, u32 dims[rank]
        if version >= 4: u8 dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), u32 n_bytes
        else:            u8 item_size (4 f32, 2 i16, 1 i8),          u32 n_elements
        raw data
    if version >= 3: u32 n_aliases, then (string alias, string target) pairs

A string is a u16 length that counts a trailing NUL, then the bytes and the NUL.

Quantized weights (`.../weight` stored as int8 or int16) come with a `.../weight_scale`
variable: int8 has one scale per output row, int16 one scale for the whole tensor
(CTranslate2 assumes 1000 when an old int16 model has none). The float value is
`quantized / scale`. An alias also aliases its target's scale.

    python3 ct2_reader.py MODEL_DIR_OR_BIN     # prints the header and every variable
"""

from __future__ import annotations

import mmap
import os
import struct
import sys

import numpy as np

MAX_BINARY_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_DTYPE_NAMES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_ITEM_SIZES = {4: 0, 2: 2, 1: 1}  # pre-v4 item size -> dtype id
_INT16_DEFAULT_SCALE = 1000.0


class Ct2FormatError(ValueError):
    pass


class Ct2Model:
    """The variables of one `model.bin`, memory-mapped (nothing is copied until used).

    Attributes: `path`, `binary_version`, `spec`, `revision`, `aliases` (alias -> target),
    `dtypes` (name -> dtype name as stored). Look-ups resolve aliases.
    """

    def __init__(self, path: str):
        if os.path.isdir(path):
            path = os.path.join(path, "model.bin")
        self.path = path
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._raw: dict[str, np.ndarray] = {}
        self.dtypes: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        self._parse()

    # ------------------------------------------------------------------ parsing
    def _parse(self) -> None:
        buf = self._map
        size = len(buf)
        off = 0

        def take(fmt: str):
            nonlocal off
            n = struct.calcsize("<" + fmt)
            if off + n > size:
                raise Ct2FormatError(f"{self.path}: truncated at byte {off}")
            v = struct.unpack_from("<" + fmt, buf, off)
            off += n
            return v[0] if len(v) == 1 else v

        def string() -> str:
            nonlocal off
            n = take("H")
            if n == 0 or off + n > size:
                raise Ct2FormatError(f"{self.path}: bad string at byte {off}")
            s = bytes(buf[off:off + n]).split(b"\0", 1)[0].decode("utf-8")
            off += n
            return s

        self.binary_version = take("I")
        if not 1 <= self.binary_version <= MAX_BINARY_VERSION:
            raise Ct2FormatError(f"{self.path}: unsupported CTranslate2 binary version {self.binary_version}")
        if self.binary_version >= 2:
            self.spec = string()
            self.revision = take("I")
        else:
            self.spec, self.revision = "", 1
        for _ in range(take("I")):
            name = string()
            rank = take("B")
            shape = tuple(take("I") for _ in range(rank))
            if self.binary_version >= 4:
                dtype_id = take("B")
                n_bytes = take("I")
            else:
                item_size = take("B")
                if item_size not in _ITEM_SIZES:
                    raise Ct2FormatError(f"{self.path}: variable {name}: unknown item size {item_size}")
                dtype_id = _ITEM_SIZES[item_size]
                n_bytes = take("I") * item_size
            if dtype_id not in _DTYPES:
                raise Ct2FormatError(f"{self.path}: variable {name}: unknown dtype id {dtype_id}")
            if off + n_bytes > size:
                raise Ct2FormatError(f"{self.path}: variable {name} runs past the end of the file")
            dt = _DTYPES[dtype_id]
            raw = np.frombuffer(buf, dtype=np.uint16 if dt == "bfloat16" else dt,
                                count=n_bytes // (2 if dt == "bfloat16" else np.dtype(dt).itemsize),
                                offset=off)
            off += n_bytes
            if raw.size != int(np.prod(shape, dtype=np.int64)):
                raise Ct2FormatError(f"{self.path}: variable {name}: {raw.size} values for shape {shape}")
            self._raw[name] = raw.reshape(shape)
            self.dtypes[name] = _DTYPE_NAMES[dtype_id]
        if self.binary_version >= 3:
            for _ in range(take("I")):
                alias = string()
                self.aliases[alias] = string()
        if off != size:
            raise Ct2FormatError(f"{self.path}: {size - off} unexpected bytes at the end")
        for alias, target in list(self.aliases.items()):
            if target + "_scale" in self._raw:
                self.aliases.setdefault(alias + "_scale", target + "_scale")

    # ------------------------------------------------------------------ access
    def _resolve(self, name: str) -> str:
        seen = set()
        while name not in self._raw and name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        return name

    def __contains__(self, name: str) -> bool:
        return self._resolve(name) in self._raw

    def names(self) -> list[str]:
        """Stored variable names (aliases excluded), in file order."""
        return list(self._raw)

    def target(self, name: str) -> str:
        """The stored variable that `name` refers to (itself unless it is an alias)."""
        return self._resolve(name)

    def raw(self, name: str) -> np.ndarray:
        """The variable as stored (read-only view; bf16 as uint16 bits)."""
        key = self._resolve(name)
        if key not in self._raw:
            raise KeyError(f"{self.path}: no variable {name}")
        return self._raw[key]

    def float32(self, name: str) -> np.ndarray:
        """The variable as a new float32 array, dequantized when stored as int8/int16."""
        key = self._resolve(name)
        a = self.raw(key)
        dt = self.dtypes[key]
        if dt == "bfloat16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        if dt in ("int8", "int16") and key.endswith("weight"):
            scale_name = key + "_scale"
            if scale_name in self._raw:
                scale = self._raw[scale_name].astype(np.float32)
            elif dt == "int16":
                scale = np.float32(_INT16_DEFAULT_SCALE)
            else:
                raise Ct2FormatError(f"{self.path}: int8 variable {key} has no {scale_name}")
            q = a.astype(np.float32)
            if scale.ndim == 1 and q.ndim >= 1 and scale.shape[0] == q.shape[0]:
                scale = scale.reshape((-1,) + (1,) * (q.ndim - 1))
            return q / scale
        return a.astype(np.float32)

    def scalar(self, name: str, default=None):
        """A scalar attribute (e.g. `decoder/num_heads`) as a Python int/float, or `default`."""
        if name not in self:
            if default is None:
                raise KeyError(f"{self.path}: no variable {name}")
            return default
        a = self.raw(name)
        if a.size != 1:
            raise Ct2FormatError(f"{self.path}: {name} is not a scalar (shape {a.shape})")
        v = a.reshape(()).item()
        return float(v) if isinstance(v, float) else int(v)

    def weight_dtype(self) -> str:
        """The dtype of the linear weights (float16, float32, int8, ...), as CTranslate2 infers it."""
        kinds = {self.dtypes[n] for n in self._raw if n.endswith("weight")}
        for k in ("int8", "int16", "float16", "bfloat16"):
            if k in kinds:
                return k
        return "float32"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    m = Ct2Model(argv[1])
    print(f"binary_version {m.binary_version}  spec {m.spec}  revision {m.revision}  "
          f"variables {len(m.names())}  weights {m.weight_dtype()}")
    for n in m.names():
        a = m.raw(n)
        extra = f" = {a.reshape(()).item()}" if a.size == 1 and a.ndim == 0 else ""
        print(f"{n}  {m.dtypes[n]}  {list(a.shape)}{extra}")
    for al, tgt in m.aliases.items():
        print(f"alias {al} -> {tgt}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
