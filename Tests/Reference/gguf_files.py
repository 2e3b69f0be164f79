"""GGUF files as gguf-py 0.19.0 (PyPI) writes and reads them: the oracle for Keel's GGUF reader and writer.

Usage: gguf_files.py write PATH      a llama-style file: every metadata type, string and number arrays, and F32,
                                     F16, Q8_0, Q4_0 and Q4_K tensors (alignment 32, or 64 with --alignment 64)
       gguf_files.py describe PATH   prints, as JSON, what GGUFReader reads: the metadata in order with its types
                                     and values, the alignment, and each tensor's name, type, dimensions (ggml
                                     order), byte count and bytes (hex)
       gguf_files.py model PATH EXPECTED  a tiny SmolLM2-like Llama (tied head, GQA, "smollm" byte-level BPE) as
                                     llama.cpp's converter lays it out — q/k rows permuted, tensors in F32, F16,
                                     BF16, Q8_0, Q4_0, Q4_1 and Q4_K — and in EXPECTED (safetensors) what an import
                                     must give: every weight under its Hugging Face name as gguf-py dequantizes it,
                                     in Hugging Face's row order, and "ids": Hugging Face `tokenizers`' ids of the
                                     text in the metadata key "text", for a tokenizer built from the file's lists
                                     (with --add-bos the file asks for BOS before every text; with
                                     --broken-template its chat template does not parse; with --bos-id N its
                                     beginning-of-sequence token is N)
       gguf_files.py ends-turn PATH [--eot-id]
                                     a tiny Llama with that tokenizer whose greedy choice after any text is
                                     <|im_end|>, while its end-of-sequence token is <|endoftext|> (the
                                     blocks add nothing to the stream, and the tied token table's <|im_end|> row
                                     points where every other row does, four times as long); with --eot-id the
                                     vocabulary has Llama 3's <|eot_id|> as a fourth special token, and that is
                                     the greedy choice
       gguf_files.py permuted PATH TENSOR HF.f32 HEADS
                                     exits 0 when F32 tensor TENSOR of the file is the Hugging Face weight in
                                     HF.f32 ([rows, columns] float32) permuted as llama.cpp's convert_hf_to_gguf.py
                                     permutes q_proj and k_proj for HEADS heads
"""
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize


def smollm_like_vocabulary():
    """SmolLM2's kind of byte-level BPE vocabulary, in little: three special tokens, the bytes spelled as GPT-2
    spells them (without 0x04 and 0xFF, which SmolLM2's vocabulary lacks too) and eight merges."""
    # GPT-2's byte-to-character map, so tokens are spelled as in llama.cpp's files.
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in chars:
            chars[b], extra = chr(256 + extra), extra + 1
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("o", "n"), ("Ġa", "n"), ("e", "r")]
    tokens = specials + [chars[b] for b in range(256) if b not in (4, 255)] + [a + b for a, b in merges]
    return specials, merges, tokens


def llama_writer(path, name, C, L, H, KV, F, hd, specials, merges, tokens, eos):
    """A GGUFWriter with a Llama's hyperparameters and the vocabulary's tokenizer in its metadata."""
    writer = GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_context_length(128)
    writer.add_embedding_length(C)
    writer.add_block_count(L)
    writer.add_feed_forward_length(F)
    writer.add_head_count(H)
    writer.add_head_count_kv(KV)
    writer.add_rope_dimension_count(hd)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(100000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(specials) + [1] * (len(tokens) - len(specials)))
    writer.add_token_merges([a + " " + b for a, b in merges])
    # --bos-id N: a beginning-of-sequence id of the caller's (one outside the vocabulary, for a damaged file).
    writer.add_bos_token_id(int(sys.argv[sys.argv.index("--bos-id") + 1]) if "--bos-id" in sys.argv else 1)
    writer.add_eos_token_id(eos)
    return writer


def write_out(writer):
    """Writes the file: header, metadata, tensors."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


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
    write_out(writer)
elif command == "model":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import safetensors_np
    from gguf.quants import dequantize
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    rng = np.random.default_rng(23)
    C, L, H, KV, F, hd = 64, 2, 4, 2, 256, 16
    specials, merges, tokens = smollm_like_vocabulary()
    V = len(tokens)
    writer = llama_writer(path, "tiny smollm-like", C, L, H, KV, F, hd, specials, merges, tokens, eos=2)
    writer.add_add_bos_token("--add-bos" in sys.argv)
    if "--broken-template" in sys.argv:
        writer.add_chat_template("{% for message in messages %}{{ message.content }")
    else:
        writer.add_chat_template("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                                 "{{ '<|im_start|>system\nYou are a tiny test model<|im_end|>\n' }}{% endif %}"
                                 "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

    def permute(w, heads):
        # convert_hf_to_gguf.py, LlamaModel.permute
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    def q4_k_blocks(rows, columns):
        """Random Q4_K super-blocks with sane fp16 scales (gguf-py cannot quantize Q4_K)."""
        blocks = rng.integers(0, 256, size=(rows, columns // 256, 144), dtype=np.uint8)
        scales = rng.uniform(0.001, 0.01, size=(rows, columns // 256, 2)).astype(np.float16).view(np.uint8)
        blocks[:, :, 0:4] = scales.reshape(rows, columns // 256, 4)
        return blocks.reshape(rows, -1)

    expected = {}

    def add(hf_name, gguf_name, weight, kind, heads=None):
        if kind == "Q4_K":
            stored = q4_k_blocks(*weight.shape)
            values = dequantize(stored, GGMLQuantizationType.Q4_K)
            # The rows as llama.cpp holds them are the Hugging Face rows permuted.
            expected[hf_name] = permute(values, heads) if heads else values
            writer.add_tensor(gguf_name, stored, raw_dtype=GGMLQuantizationType.Q4_K)
            return
        rows = permute(weight, heads) if heads else weight
        if kind == "F32":
            writer.add_tensor(gguf_name, rows)
            expected[hf_name] = weight
        elif kind == "F16":
            writer.add_tensor(gguf_name, rows.astype(np.float16))
            expected[hf_name] = weight.astype(np.float16).astype(np.float32)
        else:
            qtype = GGMLQuantizationType[kind]
            stored = quantize(rows, qtype)
            writer.add_tensor(gguf_name, stored, raw_dtype=qtype)
            # Row-wise formats: dequantizing the Hugging Face rows gives the same rows, in Hugging Face's order.
            expected[hf_name] = dequantize(quantize(weight, qtype), qtype)

    def normal(*shape):
        return rng.normal(scale=0.5, size=shape).astype(np.float32)

    add("model.embed_tokens.weight", "token_embd.weight", normal(V, C), "Q8_0")
    for i in range(L):
        p = f"model.layers.{i}."
        add(p + "input_layernorm.weight", f"blk.{i}.attn_norm.weight", 1 + normal(C) / 5, "F32")
        add(p + "self_attn.q_proj.weight", f"blk.{i}.attn_q.weight", normal(H * hd, C), "Q4_1", heads=H)
        add(p + "self_attn.k_proj.weight", f"blk.{i}.attn_k.weight", normal(KV * hd, C), "Q4_0" if i else "Q4_1", heads=KV)
        add(p + "self_attn.v_proj.weight", f"blk.{i}.attn_v.weight", normal(KV * hd, C), "Q4_1")
        add(p + "self_attn.o_proj.weight", f"blk.{i}.attn_output.weight", normal(C, H * hd), "BF16" if i else "F16")
        add(p + "post_attention_layernorm.weight", f"blk.{i}.ffn_norm.weight", 1 + normal(C) / 5, "F32")
        add(p + "mlp.gate_proj.weight", f"blk.{i}.ffn_gate.weight", normal(F, C), "Q8_0")
        add(p + "mlp.up_proj.weight", f"blk.{i}.ffn_up.weight", normal(F, C), "Q8_0")
        add(p + "mlp.down_proj.weight", f"blk.{i}.ffn_down.weight", normal(C, F), "Q4_K")
    add("model.norm.weight", "output_norm.weight", 1 + normal(C) / 5, "F32")
    write_out(writer)
    expected = {name: value.astype(np.float32) for name, value in expected.items()}

    # The tokenizer these lists make, built by Hugging Face `tokenizers` as SmolLM2's tokenizer.json is: the special
    # tokens in the vocabulary at their ids, and added as special tokens.
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(specials)
    text = "In 1599 the\x04 then,  inner  12 ÿ <|im_start|>the end\n"
    expected["ids"] = np.array(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int32)
    safetensors_np.save_file(expected, sys.argv[3], metadata={"text": text})
elif command == "ends-turn":
    rng = np.random.default_rng(29)
    C, H, KV, F, hd = 64, 4, 2, 64, 16
    specials, merges, tokens = smollm_like_vocabulary()
    answer = "<|im_end|>"
    if "--eot-id" in sys.argv:
        answer = "<|eot_id|>"
        tokens = specials + [answer] + tokens[len(specials):]
        specials = specials + [answer]
    writer = llama_writer(path, "tiny ends-turn", C, 1, H, KV, F, hd, specials, merges, tokens, eos=0)
    # Every row of the token table near one direction u, the answer's four times as long: with blocks that add
    # nothing, the final norm's output is about u whatever the token, and the answer's logit the largest.
    u = rng.normal(size=C).astype(np.float32)
    table = u + 0.05 * rng.normal(size=(len(tokens), C)).astype(np.float32)
    table[specials.index(answer)] = 4 * u
    writer.add_tensor("token_embd.weight", table)
    ones = np.ones(C, dtype=np.float32)
    writer.add_tensor("blk.0.attn_norm.weight", ones)
    writer.add_tensor("blk.0.attn_q.weight", rng.normal(size=(H * hd, C)).astype(np.float32))
    writer.add_tensor("blk.0.attn_k.weight", rng.normal(size=(KV * hd, C)).astype(np.float32))
    writer.add_tensor("blk.0.attn_v.weight", rng.normal(size=(KV * hd, C)).astype(np.float32))
    writer.add_tensor("blk.0.attn_output.weight", np.zeros((C, H * hd), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", ones)
    writer.add_tensor("blk.0.ffn_gate.weight", rng.normal(size=(F, C)).astype(np.float32))
    writer.add_tensor("blk.0.ffn_up.weight", rng.normal(size=(F, C)).astype(np.float32))
    writer.add_tensor("blk.0.ffn_down.weight", np.zeros((C, F), dtype=np.float32))
    writer.add_tensor("output_norm.weight", ones)
    write_out(writer)
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
