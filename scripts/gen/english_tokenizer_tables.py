"""Writes Sources/KeelWeb/EnglishTokenizerTables.swift from spaCy's English tokenizer and datatrove's text constants.

datatrove 0.10 splits English text into words with `spacy.blank("en")`; Keel's `EnglishTokenizer` reimplements
that tokenizer's algorithm and takes its data — affix character classes, unit and currency lists, the 1,300
special cases, the sentencizer's punctuation — from here, so both split text the same way. The structure of
spaCy's compiled patterns is asserted below: if a new spaCy changes it, this script fails instead of writing
tables the Swift code would misread.

    .venv/bin/python scripts/gen/english_tokenizer_tables.py > Sources/KeelWeb/EnglishTokenizerTables.swift
"""
import re
import sys

import spacy
from datatrove.utils import text as dt_text
from spacy.pipeline import Sentencizer

nlp = spacy.blank("en")
tok = nlp.tokenizer
# A character class of 60 characters or more, escapes included (spaCy's classes hold `\]`).
CLASS = re.compile(r"(?<!\\)\[(?:\\.|[^\]\\]){60,}\]")


def abbreviate(pattern, names):
    classes = []

    def replace(match):
        classes.append(match.group(0))
        return "CLASS"

    return CLASS.sub(replace, pattern), classes


def members(class_pattern):
    rx = re.compile(class_pattern)
    ranges, start, prev = [], None, None
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        if rx.fullmatch(chr(c)):
            if start is None:
                start = prev = c
            elif c == prev + 1:
                prev = c
            else:
                ranges.append((start, prev))
                start = prev = c
    if start is not None:
        ranges.append((start, prev))
    return ranges


prefix, prefix_classes = abbreviate(tok.prefix_search.__self__.pattern, None)
suffix, suffix_classes = abbreviate(tok.suffix_search.__self__.pattern, None)
infix, infix_classes = abbreviate(tok.infix_finditer.__self__.pattern, None)
url, url_classes = abbreviate(tok.url_match.__self__.pattern, None)
assert tok.token_match is None

# The pieces the Swift code handles by hand; everything else in the affix lists is a literal.
symbols = prefix_classes[-1]
assert prefix.endswith("|^CLASS") and suffix_classes[0] == symbols and infix_classes[0] == symbols
assert infix == (r"\.\.+|…|CLASS|(?<=[0-9])[+\-\*^](?=[0-9-])|(?<=CLASS)\.(?=CLASS)|(?<=CLASS),(?=CLASS)"
                        r"|(?<=CLASS)(?:-|–|—|--|---|——|~)(?=CLASS)|(?<=CLASS)[:<>=/](?=CLASS)"), infix
lower_i, upper_i, alpha_a, alpha_b, alnum_a, alpha_c, alnum_b, alpha_d = infix_classes[1:]
assert alpha_a == alpha_b == alpha_c == alpha_d and alnum_a == alnum_b

prefix_pieces = prefix.split("|")
special_prefix = {r"^\+(?![0-9])", r"^\.\.+", "^CLASS"}
prefix_literals = []
for piece in prefix_pieces:
    assert piece.startswith("^")
    if piece in special_prefix:
        prefix_literals.append({r"^\+(?![0-9])": "<plus>", r"^\.\.+": "<dots>", "^CLASS": "<symbol>"}[piece])
    else:
        literal = piece[1:].replace("\\", "")
        assert re.fullmatch(piece[1:], literal), piece
        prefix_literals.append(literal)

tail = re.search(r"\|CLASS\$\|(.*)$", suffix).group(1)
head = suffix[: suffix.index("|CLASS$|")]
suffix_literals = []
for piece in head.split("|"):
    assert piece.endswith("$")
    if piece == r"\.\.+$":
        continue
    literal = piece[:-1].replace("\\", "")
    assert re.fullmatch(piece[:-1], literal), piece
    suffix_literals.append(literal)
match = re.fullmatch(
    r"'s\$\|'S\$\|’s\$\|’S\$\|—\$\|–\$\|\(\?<=\[0-9\]\)\\\+\$\|\(\?<=°\[FfCcKk\]\)\\\.\$"
    r"\|\(\?<=\[0-9\]\)\(\?:(?P<currency>[^)]*)\)\$\|\(\?<=\[0-9\]\)\(\?:(?P<units>[^)]*)\)\$"
    r"\|\(\?<=CLASS\)\\\.\$\|\(\?<=CLASSCLASS\)\\\.\$", tail)
assert match, tail
assert re.search(r"\\.\\.\+\$", head)
suffix_literals += ["'s", "'S", "’s", "’S", "—", "–"]
currencies = [c.replace("\\", "") for c in match.group("currency").split("|")]
units = [u.replace("\\", "") for u in match.group("units").split("|")]
period_after, upper_pair, upper_pair_b = suffix_classes[1:]
assert upper_pair == upper_pair_b
assert url == (r"(?u)^(?:(?:[\w\+\-\.]{2,})://)?(?:\S+(?::\S*)?@)?(?:(?!(?:10|127)(?:\.\d{1,3}){3})"
               r"(?!(?:169\.254|192\.168)(?:\.\d{1,3}){2})(?!172\.(?:1[6-9]|2\d|3[0-1])(?:\.\d{1,3}){2})"
               r"(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}"
               r"(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))|(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?"
               r"[A-Za-z0-9\u00a1-\uffff]\.)+(?:CLASS{2,63}))(?::\d{2,5})?(?:[/?#]\S*)?$"), url
(url_tld,) = url_classes

specials = []
for key, tokens in sorted(tok.rules.items()):
    orths = [t[65] for t in tokens]
    assert "".join(orths) == key, key
    specials.append([key] + orths)


def swift_string(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) <= 0xDFFF or ord(ch) in (0x2028, 0x2029, 0xFEFF):
            out.append("\\u{%X}" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def ranges_literal(ranges):
    text = " ".join("%X" % a if a == b else "%X-%X" % (a, b) for a, b in ranges)
    # Split only at spaces so no range is cut in two.
    lines, line = [], ""
    for item in text.split(" "):
        if len(line) + len(item) + 1 > 110:
            lines.append(line)
            line = item
        else:
            line = item if not line else line + " " + item
    lines.append(line)
    return '"""\n' + "\n".join("        " + l for l in lines) + '\n        """'


def string_array(items, per_line=12):
    rows = [", ".join(swift_string(s) for s in items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "[\n" + ",\n".join("        " + r for r in rows) + ",\n    ]"


out = sys.stdout
out.write(f"""// Generated by scripts/gen/english_tokenizer_tables.py from spaCy {spacy.__version__}'s English tokenizer and
// datatrove's text constants. Do not edit: run the script again.

/// The data of spaCy's English tokenizer (affix classes and lists, special cases, the sentencizer's punctuation)
/// and of datatrove's punctuation sets, which `EnglishTokenizer` and the quality filters read.
enum EnglishTokenizerTables {{
""")
for name, pattern, doc in [
    ("symbols", symbols, "Symbols split off as prefix, suffix and infix (spaCy's LIST_ICONS)."),
    ("periodSuffixAfter", period_after, "Characters after which a final period is a suffix."),
    ("upper", upper_pair, "Upper-case letters (a final period after two of them is a suffix)."),
    ("infixLower", lower_i, "Lower-case letters before an infix period."),
    ("infixUpper", upper_i, "Upper-case letters after an infix period."),
    ("alpha", alpha_a, "Letters around infix commas, hyphens and `:<>=/`."),
    ("alphaNumeric", alnum_a, "Letters and digits before infix hyphens and `:<>=/`."),
    ("urlTopLevelDomain", url_tld, "Characters of a URL's top-level domain."),
]:
    out.write(f"    /// {doc}\n    static let {name} = {ranges_literal(members(pattern))}\n\n")
out.write("    /// Prefix alternatives in spaCy's order; `<plus>`, `<dots>` and `<symbol>` stand for its three patterns.\n")
out.write(f"    static let prefixes: [String] = {string_array(prefix_literals)}\n\n")
out.write("    /// Literal suffixes (spaCy's `..+`, symbols and look-behind rules are handled in code).\n")
out.write(f"    static let suffixes: [String] = {string_array(suffix_literals)}\n\n")
out.write("    /// Currency signs split off after a digit.\n")
out.write(f"    static let currencies: [String] = {string_array(currencies)}\n\n")
out.write("    /// Units split off after a digit.\n")
out.write(f"    static let units: [String] = {string_array(units)}\n\n")
out.write("    /// Special cases: each entry is the string, then its tokens, separated by U+001F.\n")
special_entries = ["\x1f".join(s) for s in specials]
out.write(f"    static let specialCases: [String] = {string_array(special_entries, 6)}\n\n")
out.write("    /// Characters that end a sentence for spaCy's sentencizer.\n")
out.write(f"    static let sentenceEnds: [String] = {string_array(list(Sentencizer.default_punct_chars))}\n\n")
out.write("    /// datatrove's PUNCTUATION_SET: a word made only of these is a symbol, not a word, for Gopher's rules.\n")
out.write(f"    static let punctuation: [String] = {string_array(sorted(dt_text.PUNCTUATION_SET))}\n\n")
out.write("    /// datatrove's TERMINAL_PUNCTUATION: FineWeb's line-ending characters.\n")
out.write(f"    static let terminalPunctuation: [String] = {string_array(sorted(dt_text.TERMINAL_PUNCTUATION))}\n")
out.write("}\n")
