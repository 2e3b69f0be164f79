"""Prints the expected values in Tests/KeelWebTests/QualityFilterTests.swift: spaCy's tokens and datatrove 0.10's
decisions on the documents that test builds. Run: .venv/bin/python Tests/Reference/quality_filter_cases.py"""
import importlib.metadata, json
import spacy
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.utils.text import split_into_words, split_into_sentences
t = spacy.blank("en").tokenizer
cases = ["Don't stop-believing, e.g. U.S.A. 5km $3.50 (hello) http://x.com/a?b=1 it's 10:30pm...",
         "Liebe’’ stehen alpin): Mit x:) y", "\ufeff\nAppeasement  ist\tda", "a--b c—d 1+2 3-4 Hello.World Google.com 20°F.",
         "“Quoted,” she said; (really?) [1] #tag @user 1,000,000 a/b A.B.C. 3a.m. can't cannot gonna"]
for c in cases:
    print(json.dumps(c, ensure_ascii=False), json.dumps([x.text for x in t(c)], ensure_ascii=False), json.dumps(split_into_words(c), ensure_ascii=False))
for line in ["Hello world. This is it! Is it? Yes...", "One sentence only", "Dr. Smith went home. He slept.", "Wait... what?! OK."]:
    print(json.dumps(line), len(split_into_sentences(line)))
good = ("The history of the town is long and varied. " * 3 + "It was founded in the twelfth century by monks who wanted to have a place to pray and to work with their hands. "
        "Over time, the settlement grew into a market town with a church, a mill and several inns. Today it is known for its old bridge and the annual fair.\n")
docs = {
 "good": good,
 "short": "The cat sat on the mat with the dog.",
 "hashes": good + " ".join(["#tag"] * 30),
 "ellipsis": good + "\n" + "\n".join(["and then ..."] * 40),
 "bullets": "\n".join(["- item number %d of the list that goes on and the end" % i for i in range(60)]),
 "nonalpha": good + " " + " ".join(["12345"] * 60),
 "stopwords": " ".join(["apple banana cherry dates elder figs grape"] * 10),
 "dup_para": "Paragraph one is here and it is fine.\n\nParagraph one is here and it is fine.\n\nAnother one.",
 "dup_lines": good + "\n".join(["same line again"] * 10) + "\nend",
 "top_gram": " ".join(["the cat"] * 40) + " " + good,
 "dup_ngrams": (good + " ") * 2,
 "c4_lorem": "Lorem ipsum dolor sit amet, consectetur.\n" + good,
 "c4_curly": good + "function x() { return 1; }.",
 "c4_few": "This is one. This is two.\nShort line\nNo punctuation here at all",
 "c4_lines": "Menu Home About\n" + good + "Please enable JavaScript to view this page.\nWe use cookies to improve your experience, see our privacy policy.\nCopyright 2024 [1] all rights reserved.\nThe end is near [12]. Is it not?\n",
 "fw_punct": "\n".join(["line without ending %d words words" % i for i in range(20)]) + "\nOne ends.",
 "fw_short": "\n".join(["Short one." for i in range(10)] ) + "\n" + good,
 "fw_list": "\n".join(["Item %d is a thing." % i for i in range(30)]),
}
rules = {"gopher_repetition": GopherRepetitionFilter(), "gopher_quality": GopherQualityFilter(), "c4_quality": C4QualityFilter(), "fineweb_quality": FineWebQualityFilter()}
for name, text in docs.items():
    out = {}
    for r, f in rules.items():
        d = Document(text=text, id="x")
        res = f.filter(d)
        out[r] = res[1] if isinstance(res, tuple) else ("keep" if res else "drop")
        if r == "c4_quality" and out[r] == "keep": out["c4_text"] = d.text
    print(name, json.dumps(text, ensure_ascii=False)[:60], json.dumps(out, ensure_ascii=False))
