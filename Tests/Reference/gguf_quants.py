"""llama.cpp's block formats as gguf-py 0.19.0 (PyPI; pinned: later versions changed Q4_0's rounding) computes them:
the oracle the quantization tests compare Keel's bytes and values with.

Usage: gguf_quants.py quantize FORMAT VALUES.f32 BLOCKS.bin   (Q8_0, Q4_0, Q4_1, Q5_0: gguf-py has no Q4_K quantizer)
       gguf_quants.py dequantize FORMAT BLOCKS.bin VALUES.f32 (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K)
Values are little-endian float32, rows of 256.
"""
import sys

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize

command, name, source, target = sys.argv[1:5]
qtype = GGMLQuantizationType[name.upper()]
block_values, block_bytes = GGML_QUANT_SIZES[qtype]
if command == "quantize":
    values = np.fromfile(source, dtype="<f4").reshape(-1, 256)
    quantize(values, qtype).tofile(target)
else:
    blocks = np.fromfile(source, dtype=np.uint8).reshape(-1, 256 // block_values * block_bytes)
    dequantize(blocks, qtype).astype("<f4").tofile(target)
