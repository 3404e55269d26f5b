#!/usr/bin/env python3
"""Reference renderer for the chat-template conformance tests (tests/Research.Tests/JinjaTests.fs).

Renders chat templates with Debian's python3-jinja2, configured as transformers'
`_compile_jinja_template` configures it (src/transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols extension,
a `{% generation %}` tag, transformers' `tojson` filter and its `raise_exception` / `strftime_now`
globals; each case is rendered as `apply_chat_template(tokenize=False)` renders it, with
messages, tools=None, documents=None, add_generation_prompt and the special tokens.

stdin:  {"templates": [{"name": str, "template": str,
                        "cases": [{"messages": [...], "add_generation_prompt": bool,
                                   "special_tokens": {...}, "extra": {...}}]}]}
stdout: {"results": [[{"ok": true, "text": str} | {"ok": false, "raised": bool, "error": str}]]}
One process renders every case, since starting Python is the slow part.
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateRaised(Exception):
    """What raise_exception throws, told apart from jinja2's own errors."""


class GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}` renders its body unchanged (transformers uses it to
    find assistant tokens; the text is the same)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise TemplateRaised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render_case(template, case):
    kwargs = dict(case.get("special_tokens") or {})
    kwargs.update(case.get("extra") or {})
    try:
        text = template.render(
            messages=case["messages"],
            tools=kwargs.pop("tools", None),
            documents=kwargs.pop("documents", None),
            add_generation_prompt=case.get("add_generation_prompt", False),
            **kwargs,
        )
        return {"ok": True, "text": text}
    except TemplateRaised as e:
        return {"ok": False, "raised": True, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - any other failure is reported, not raised
        return {"ok": False, "raised": False, "error": f"{type(e).__name__}: {e}"}


def main():
    request = json.load(sys.stdin)
    env = make_environment()
    results = []
    for entry in request["templates"]:
        try:
            template = env.from_string(entry["template"])
        except jinja2.TemplateError as e:
            results.append([{"ok": False, "raised": False, "error": f"{type(e).__name__}: {e}"}] * len(entry["cases"]))
            continue
        results.append([render_case(template, case) for case in entry["cases"]])
    json.dump({"jinja2": jinja2.__version__, "results": results}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
