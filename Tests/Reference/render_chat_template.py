"""Renders a chat template as transformers' apply_chat_template(tokenize=False) does: the oracle Keel's ChatTemplate
is compared with. The environment is transformers' (utils/chat_template_utils.py, _cached_compile_jinja_template):
jinja2's ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension, the
{% generation %} tracker, a tojson that keeps non-ASCII text and key order, raise_exception, strftime_now (here at
a fixed time, 2026-12-05 09:07:03, so that the output is reproducible), dict and namespace.

Usage: render_chat_template.py TEMPLATE CASES.json
  CASES.json: a list of {"messages": [...], "add_generation_prompt": bool, "tools": [...] or null, "variables": {...}}
  (variables include the special tokens). Prints a JSON list, one object a case: {"text": ..., "generated":
  [[start, end], ...]} (UTF-8 byte offsets), or {"error": message} when the template raises.
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(jinja2.ext.Extension):
    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        self.spans = []
        self.rendered = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        text = caller()
        # Offsets are fixed up after rendering: the blocks rendered so far are known then.
        self.spans.append(text)
        return "\x00GENERATION\x01" + text + "\x00END\x01"


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime(2026, 12, 5, 9, 7, 3).strftime(format)


environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[AssistantTracker, jinja2.ext.loopcontrols])
environment.filters["tojson"] = tojson
environment.globals["raise_exception"] = raise_exception
environment.globals["strftime_now"] = strftime_now
environment.globals["dict"] = dict
environment.globals["namespace"] = jinja2.utils.Namespace

def render(template, case):
    try:
        marked = template.render(messages=case["messages"], tools=case.get("tools"), documents=None,
                                 add_generation_prompt=case["add_generation_prompt"], **case.get("variables", {}))
    except jinja2.exceptions.TemplateError as error:
        return {"error": str(error)}
    text, spans, start = "", [], 0
    for piece in marked.split("\x00"):
        if piece.startswith("GENERATION\x01"):
            start = len(text.encode())
            text += piece[len("GENERATION\x01"):]
        elif piece.startswith("END\x01"):
            spans.append([start, len(text.encode())])
            text += piece[len("END\x01"):]
        else:
            text += piece
    return {"text": text, "generated": spans}


template_path, cases_path = sys.argv[1:3]
template = environment.from_string(open(template_path, encoding="utf-8").read())
cases = json.load(open(cases_path, encoding="utf-8"))
print(json.dumps([render(template, case) for case in cases], ensure_ascii=False))
