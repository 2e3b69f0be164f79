"""Checks Tests/Reference/render_chat_template.py against transformers itself: every template of
Tests/Reference/chat_templates on every case of cases.json, rendered by transformers' render_jinja_template
(strftime_now at the same fixed time) and by the reference script, must agree. Needs transformers (not part of
the test environment); run with a Python that has it:
    python render_with_transformers.py      # prints how many of the renderings differ
"""
import glob
import json
import os
import subprocess
import sys
from datetime import datetime

import transformers.utils.chat_template_utils as utils


class FixedTime(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 12, 5, 9, 7, 3)


utils.datetime = FixedTime  # strftime_now reads the module's datetime
here = os.path.dirname(os.path.abspath(__file__))
cases_path = os.path.join(here, "chat_templates", "cases.json")
cases = json.load(open(cases_path))
differ = total = 0
for path in sorted(glob.glob(os.path.join(here, "chat_templates", "*.jinja"))):
    template = open(path).read()
    reference = json.loads(subprocess.run([sys.executable, os.path.join(here, "render_chat_template.py"), path, cases_path],
                                          capture_output=True, text=True, check=True).stdout)
    for index, (case, expected) in enumerate(zip(cases, reference)):
        total += 1
        try:
            text = utils.render_jinja_template([case["messages"]], tools=case["tools"], chat_template=template,
                                               add_generation_prompt=case["add_generation_prompt"],
                                               **case["variables"])[0][0]
        except Exception as error:  # a template's own refusal
            text = "error: " + str(error)
        ours = expected.get("text", "error: " + expected.get("error", ""))
        if text != ours:
            differ += 1
            print(f"{os.path.basename(path)} case {index}: transformers {text[:80]!r}, reference {ours[:80]!r}")
print(f"{differ} of {total} renderings differ (transformers "
      f"{__import__('transformers').__version__})")
