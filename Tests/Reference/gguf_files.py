"""GGUF files as gguf-py 0.19.0 (PyPI) writes and reads them: the oracle for Keel's GGUF reader and writer.

Usage: gguf_files.py write PATH      a llama-style file: every metadata type, string and number arrays, and F32,
                                     F16, Q8_0, Q4_0 and Q4_K tensors (alignment 32, or 64 with --alignment 64)
       gguf_files.py describe PATH   prints, as JSON, what GGUFReader reads: the metadata in order with its types
                                     and values, the alignment, and each tensor's name, type, dimensions (ggml
                                     order), byte count and bytes (hex)
       gguf_files.py permuted PATH TENSOR HF.f32 HEADS
                                     exits 0 when F32 tensor TENSOR of the file is the Hugging Face weight in
                                     HF.f32 ([rows, columns] float32) permuted as llama.cpp's convert_hf_to_gguf.py
                                     permutes q_proj and k_proj for HEADS heads
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

command, path = sys.argv[1], sys.argv[2]
if command == "write":
    rng = np.random.default_rng(7)
    writer = GGUFWriter(path, "llama")
    if "--alignment" in sys.argv:
        writer.add_custom_alignment(int(sys.argv[sys.argv.index("--alignment") + 1]))
    writer.add_context_length(2048)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "ĠThe", "日本"])
    writer.add_token_types([1, 1, 1, 3])
    writer.add_token_merges(["a b", "Ġ T"])
    writer.add_add_bos_token(False)
    writer.add_key_value("test.uint8", 200, GGUFValueType.UINT8)
    writer.add_key_value("test.int8", -5, GGUFValueType.INT8)
    writer.add_key_value("test.uint16", 60000, GGUFValueType.UINT16)
    writer.add_key_value("test.int16", -30000, GGUFValueType.INT16)
    writer.add_key_value("test.uint64", 2**40 + 3, GGUFValueType.UINT64)
    writer.add_key_value("test.int64", -(2**40), GGUFValueType.INT64)
    writer.add_key_value("test.float64", 0.1, GGUFValueType.FLOAT64)
    writer.add_key_value("test.floats", [0.5, -1.25], GGUFValueType.ARRAY, sub_type=GGUFValueType.FLOAT32)
    writer.add_tensor("token_embd.weight", rng.normal(size=(4, 64)).astype(np.float32))
    writer.add_tensor("output_norm.weight", rng.normal(size=64).astype(np.float16))
    writer.add_tensor("blk.0.attn_q.weight", quantize(rng.normal(size=(3, 64)).astype(np.float32), GGMLQuantizationType.Q8_0),
                      raw_dtype=GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_k.weight", quantize(rng.normal(size=(5, 32)).astype(np.float32), GGMLQuantizationType.Q4_0),
                      raw_dtype=GGMLQuantizationType.Q4_0)
    writer.add_tensor("blk.0.ffn_up.weight", rng.integers(0, 256, size=(2, 144), dtype=np.uint8),
                      raw_dtype=GGMLQuantizationType.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
elif command == "permuted":
    name, source, heads = sys.argv[3], sys.argv[4], int(sys.argv[5])
    tensor = next(t for t in GGUFReader(path).tensors if t.name == name)
    gguf_rows = np.asarray(tensor.data, dtype=np.float32)
    hf = np.fromfile(source, dtype="<f4").reshape(gguf_rows.shape)
    # convert_hf_to_gguf.py, LlamaModel.permute
    expected = hf.reshape(heads, 2, hf.shape[0] // heads // 2, *hf.shape[1:]).swapaxes(1, 2).reshape(hf.shape)
    sys.exit(0 if np.array_equal(gguf_rows, expected) else 1)
else:
    reader = GGUFReader(path)
    fields = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        fields.append([key, [t.name for t in field.types], value])
    tensors = [[t.name, int(t.tensor_type), [int(d) for d in t.shape], int(t.n_bytes),
                bytes(np.asarray(t.data).view(np.uint8).reshape(-1)).hex()] for t in reader.tensors]
    print(json.dumps({"fields": fields, "alignment": int(reader.alignment), "tensors": tensors}))
