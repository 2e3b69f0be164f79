#!/usr/bin/env python3
"""Reference pre-tokenizer: tiktoken's split patterns, run by the `regex` module, for checking Keel's
hand-written PreTokenizer (Sources/KeelData/PreTokenizer.swift).

Usage:
    python3 Tests/Reference/pretokenize_reference.py {gpt2,cl100k,llama3,gpt2-digits} FILE [--lengths LENGTHS]

FILE is read as bytes. With --lengths, LENGTHS is a file of whitespace-separated decimal byte counts that sum
to FILE's size, and FILE is taken as that many consecutive texts, each split on its own; otherwise FILE is one
text. Prints one JSON list with an entry per text: the list of its pieces as [start, end] UTF-8 byte offsets
within that text. Exits non-zero if the pieces do not cover a text exactly (the patterns cannot skip anything,
so that would mean a broken pattern or engine).

Why this reproduces tiktoken (which runs the same patterns with Rust's fancy-regex):
  * The patterns are tiktoken 0.14's, character for character. `regex` supports their possessive quantifiers
    and scoped `(?i:...)`, tries alternatives leftmost-first, and `(?i)` uses simple case folding, so `(?i:s)`
    also matches U+017F LONG S, as in Rust.
  * `\\s`: Rust's is the Unicode White_Space property. `regex`'s is too (unlike Python's `str.isspace()`, which
    adds U+001C-U+001F); check_whitespace() verifies this at start-up, so no explicit class is needed.
  * `$`: in Rust (no multi-line flag) it is the end of the text; in Python it also matches before a final
    newline. That cannot matter in `\\s++$`: the possessive `\\s++` would already have taken that newline.
  * Unicode version: tiktoken 0.14's Rust tables (regex-syntax 0.8.11) are Unicode 16.0, so the 4,657 letters
    and numbers that Unicode 17.0 added are unassigned characters to it, split like symbols. Keel pins the same
    version. `regex` may know Unicode 17, so pieces() first replaces each of those characters (UNICODE_17_L_N)
    with a private-use character (category Co) of the same UTF-8 length, which splits the same way.
  * Invalid UTF-8 never reaches tiktoken (it takes `str`). Keel treats each byte that is not part of a
    well-formed sequence as a character that is neither letter, number nor whitespace; decoding with
    `surrogateescape` does the same here, mapping each such byte to a lone surrogate (category Cs).

gpt2-digits is llama.cpp's "smollm" pre-tokenizer, which runs two patterns in turn: `\p{N}` makes every number
character a piece, then GPT-2's pattern splits each text between them on its own (Hugging Face's
`Digits(individual_digits=True)` followed by `ByteLevel`).
"""

import argparse
import json
import sys

import regex

PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    # Llama 3's tokenizer.json and llama.cpp's "llama-bpe": cl100k's without `\s++$`.
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}

# The Unicode White_Space property (PropList.txt), unchanged since Unicode 6.3.
WHITE_SPACE = set("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}

# The code points that Unicode 17.0 assigned to general category L or N (DerivedAge.txt), as inclusive ranges;
# probing tiktoken 0.14 on every code point shows that these, and only these, are classed differently there.
UNICODE_17_L_N = [
    (0x088F, 0x088F), (0x0C5C, 0x0C5C), (0x0CDC, 0x0CDC), (0xA7CE, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4),
    (0xA7F1, 0xA7F1), (0x10940, 0x10959), (0x10EC5, 0x10EC7), (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9),
    (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3), (0x16FF2, 0x16FF6), (0x187F8, 0x187FF), (0x18D09, 0x18D1E),
    (0x18D80, 0x18DF2), (0x1E6C0, 0x1E6DE), (0x1E6E0, 0x1E6E2), (0x1E6E4, 0x1E6E5), (0x1E6E7, 0x1E6ED),
    (0x1E6F0, 0x1E6F4), (0x1E6FE, 0x1E6FF), (0x2B73A, 0x2B73F), (0x2CEA2, 0x2CEAD), (0x323B0, 0x33479),
]
# Each maps to U+E000 (three UTF-8 bytes, like every BMP code point above U+07FF) or U+F0000 (four bytes).
TO_UNASSIGNED = {
    c: ("\ue000" if c < 0x10000 else "\U000f0000") for low, high in UNICODE_17_L_N for c in range(low, high + 1)
}


def check_whitespace():
    """Fails unless `regex`'s `\\s` is exactly White_Space, over every code point (lone surrogates included)."""
    every = "".join(map(chr, range(0x110000)))
    found = set(regex.findall(r"\s", every))
    if found != WHITE_SPACE:
        extra = sorted(f"U+{ord(c):04X}" for c in found - WHITE_SPACE)
        missing = sorted(f"U+{ord(c):04X}" for c in WHITE_SPACE - found)
        sys.exit(f"regex's \\s is not White_Space: extra {extra}, missing {missing}")


NUMBER = regex.compile(r"\p{N}")


def segments(text, isolate_numbers):
    """The texts each pattern run sees: the whole text, or (with isolate_numbers) each number character and
    each run of text between them, as (text, is_number) pairs."""
    if not isolate_numbers:
        return [(text, False)]
    result, start = [], 0
    for match in NUMBER.finditer(text):
        if match.start() > start:
            result.append((text[start:match.start()], False))
        result.append((match.group(), True))
        start = match.end()
    if start < len(text):
        result.append((text[start:], False))
    return result


def pieces(pattern, data, isolate_numbers=False):
    """The [start, end] byte ranges of the pieces of `data`."""
    text = data.decode("utf-8", "surrogateescape").translate(TO_UNASSIGNED)
    result, byte_position = [], 0
    for segment, is_number in segments(text, isolate_numbers):
        if is_number:
            size = len(segment.encode("utf-8", "surrogateescape"))
            result.append([byte_position, byte_position + size])
            byte_position += size
            continue
        for start, end in split(pattern, segment):
            result.append([byte_position + start, byte_position + end])
        byte_position += len(segment.encode("utf-8", "surrogateescape"))
    return result


def split(pattern, text):
    """The byte ranges of `pattern`'s matches in `text`, which must cover it."""
    result = []
    char_position = byte_position = 0
    for match in pattern.finditer(text):
        if match.start() != char_position or match.end() == match.start():
            sys.exit(f"pieces do not cover the text at character {char_position}")
        size = len(match.group().encode("utf-8", "surrogateescape"))
        result.append([byte_position, byte_position + size])
        char_position, byte_position = match.end(), byte_position + size
    if char_position != len(text):
        sys.exit(f"pieces stop at character {char_position} of {len(text)}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pattern", choices=sorted(PATTERNS) + ["gpt2-digits"])
    parser.add_argument("file")
    parser.add_argument("--lengths", help="file of byte counts: split FILE into that many texts")
    args = parser.parse_args()
    check_whitespace()
    isolate_numbers = args.pattern == "gpt2-digits"
    pattern = regex.compile(PATTERNS["gpt2" if isolate_numbers else args.pattern])
    with open(args.file, "rb") as f:
        data = f.read()
    if args.lengths:
        with open(args.lengths) as f:
            lengths = [int(word) for word in f.read().split()]
        if sum(lengths) != len(data):
            sys.exit(f"lengths sum to {sum(lengths)}, but the file has {len(data)} bytes")
    else:
        lengths = [len(data)]
    texts, offset = [], 0
    for length in lengths:
        texts.append(pieces(pattern, data[offset:offset + length], isolate_numbers))
        offset += length
    json.dump(texts, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
