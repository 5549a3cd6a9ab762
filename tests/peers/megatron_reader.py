"""Reads a Megatron-LM indexed dataset (PREFIX.idx + PREFIX.bin) with numpy alone,
following the layout of megatron/core/datasets/indexed_dataset.py (_IndexWriter.write,
_IndexReader), independently of speechmill's writer:

    .idx  magic b"MMIDIDX\\x00\\x00" (9), version <Q (= 1), dtype code <B,
          sequence count <Q, document count <Q (= len(document_indices)),
          sequence_lengths int32[sequence count],
          sequence_pointers int64[sequence count] (byte offsets into .bin),
          document_indices int64[document count] (0, then the end of each document
          in sequences)
    .bin  the tokens of every sequence, in the dtype

    python megatron_reader.py PREFIX

prints JSON {"dtype_code": .., "documents": [[[tokens...], ...], ...]}.
"""
import json
import struct
import sys

import numpy as np

HEADER = b"MMIDIDX\x00\x00"
DTYPES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}


def read(prefix):
    with open(prefix + ".idx", "rb") as f:
        idx = f.read()
    with open(prefix + ".bin", "rb") as f:
        binary = f.read()
    if idx[:9] != HEADER:
        raise ValueError(f"{prefix}.idx: bad magic {idx[:9]!r}")
    (version,) = struct.unpack("<Q", idx[9:17])
    if version != 1:
        raise ValueError(f"{prefix}.idx: version {version}")
    (code,) = struct.unpack("<B", idx[17:18])
    sequence_count, document_count = struct.unpack("<QQ", idx[18:34])
    dtype = np.dtype(DTYPES[code]).newbyteorder("<")
    offset = 34
    lengths = np.frombuffer(idx, dtype="<i4", count=sequence_count, offset=offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(idx, dtype="<i8", count=sequence_count, offset=offset)
    offset += pointers.nbytes
    doc_indices = np.frombuffer(idx, dtype="<i8", count=document_count, offset=offset)
    offset += doc_indices.nbytes
    if offset != len(idx):
        raise ValueError(f"{prefix}.idx: {len(idx) - offset} bytes after document_indices")
    if document_count < 1 or doc_indices[0] != 0 or doc_indices[-1] != sequence_count:
        raise ValueError(f"{prefix}.idx: document_indices {doc_indices.tolist()}")
    expected = np.concatenate([[0], np.cumsum(lengths.astype(np.int64) * dtype.itemsize)])
    if not np.array_equal(pointers, expected[:-1]) or expected[-1] != len(binary):
        raise ValueError(f"{prefix}: sequence_pointers do not follow the lengths")
    sequences = [
        np.frombuffer(binary, dtype=dtype, count=int(n), offset=int(p))
        for n, p in zip(lengths, pointers)
    ]
    documents = [
        [sequences[s].tolist() for s in range(int(a), int(b))]
        for a, b in zip(doc_indices[:-1], doc_indices[1:])
    ]
    return {"dtype_code": int(code), "documents": documents}


def main():
    print(json.dumps(read(sys.argv[1])))


if __name__ == "__main__":
    main()
