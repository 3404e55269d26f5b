/// The Jinja2-subset template engine (src/Research.Templates): hand-checked expressions, whitespace
/// control, loops, namespaces, filters and errors, then the real chat templates of Qwen3, Qwen2.5,
/// Llama 2/3/3.1, Mistral v0.1/v0.3, Gemma and Gemma 3 rendered on the conversations of
/// fixtures/chat_templates/conversations.json by this engine and by Debian's python3-jinja2 (set up as
/// transformers sets it up, tests/reference/render_chat_template.py), byte for byte.
module Research.Tests.JinjaTests

open System
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open Expecto
open Research.Templates
open Research.Tests.TestUtil

let private noVars = Dictionary<string, obj>() :> IReadOnlyDictionary<string, obj>

let private render (source: string) = JinjaTemplate.Parse(source, "t").Render(noVars)

let private renderWith (source: string) (vars: (string * obj) list) =
    JinjaTemplate.Parse(source, "t").Render(readOnlyDict vars)

/// One test of several snippets, each with the output python3-jinja2 gives for it.
let private cases name (pairs: (string * string) list) =
    test name {
        for source, expected in pairs do
            Expect.equal (render source) expected source
    }

let private expressions =
    testList "expressions" [
        cases "arithmetic follows Python" [
            "{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 1.5 + 1 }}|{{ 10 / 5 }}", "7|3|-4|2|3.5|1024|2.5|2.0"
            "{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1, 2] + [3] }}", "a1NoneTrue|ababab|[1, 2, 3]" ]
        cases "values print as Python's str()" [
            "{{ (1, 'x') }}|{{ (1,) }}|{{ {'a': [1, 2.5, none]} }}", "(1, 'x')|(1,)|{'a': [1, 2.5, None]}"
            "{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e-5 }}|{{ 123456789.0 }}|{{ 1e16 }}|{{ 1e15 }}|{{ -0.0 }}|{{ 3.0 }}",
            "0.30000000000000004|1e+20|1e-05|123456789.0|1e+16|1000000000000000.0|-0.0|3.0"
            """{{ [1, 'two', 3.0, none, true, 'it\'s', 'q"'] }}|{{ {'k': 'v', 1: 2} }}|{{ ['\n\t'] }}|{{ none }}|{{ true }}""",
            """[1, 'two', 3.0, None, True, "it's", 'q"']|{'k': 'v', 1: 2}|['\n\t']|None|True""" ]
        cases "undefined prints empty, is falsy and has length 0" [
            "{{ x }}|{{ x is defined }}|{{ x is undefined }}|{{ x | default('d') }}|{{ '' | default('e', true) }}|{{ x | length }}", "|False|True|d|e|0" ]
        cases "conditionals, logic and chained comparisons" [
            "{{ 'a' if false }}|{{ 'b' if 1 > 2 else 'c' }}|{{ not 0 }}|{{ 1 and 'y' }}|{{ 0 or '' or 'z' }}|{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}", "|c|True|y|z|True|False" ]
        cases "in, not in and equality" [
            "{{ 'ell' in 'hello' }}|{{ 2 in [1, 2] }}|{{ 'k' in {'k': 1} }}|{{ 3 not in [1] }}|{{ [1, 2] == [1, 2] }}|{{ 1 == 1.0 }}|{{ true == 1 }}", "True|True|True|True|True|True|True" ]
        cases "attribute, subscript and slices" [
            "{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('b') }}{{ {'a': 1}.get('b', 9) }}|{{ {'a': 1, 'b': 2}.keys() | list }}|{{ {'a': 1}.values() | list }}|{{ {'x': {'y': 3}}.x.y }}|{{ {'x': 1}['x'] }}",
            "1None9|['a', 'b']|[1]|3|1"
            "{{ [1, 2, 3, 4, 5][1:3] }}|{{ [1, 2, 3][::-1] }}|{{ 'hello'[1:] }}|{{ 'hello'[-2:] }}|{{ [1, 2, 3][:-1] }}|{{ 'abcdef'[::2] }}|{{ [1, 2, 3][-1] }}|{{ [1][5] }}",
            "[2, 3]|[3, 2, 1]|ello|lo|[1, 2]|ace|3|"
            "{% for m in [{'role': 'a'}] %}{{ m.role }}{{ m['role'] }}{{ m.missing is defined }}{{ m.items is defined }}{% endfor %}|{{ 'abc'.missing is defined }}", "aaFalseTrue|False" ]
        cases "string methods" [
            "{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'xx-y'.replace('x', 'z') }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith(('x', 'lo')) }}",
            "['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|zz-y|bba|TrueTrue"
            """{{ '\n\nhi\n'.strip() }}|{{ '\nhi\n'.lstrip('\n') }}|{{ 'hi\n\n'.rstrip() }}|{{ 'they\'re bill'.title() }}|{{ '{} and {name}'.format(1, name='n') }}|{{ '-'.join(['a', 'b']) }}""",
            "hi|hi\n|hi|They'Re Bill|1 and n|a-b"
            """{{ 'x'.upper() ~ 'Y'.lower() }}|{{ 'abc'.find('c') }}|{{ 'a\u00e9\U0001F600' | length }}|{{ '\x41\101' }}""", "Xy|2|3|AA" ]
        cases "globals: namespace, range, dict" [
            "{{ namespace(a=1).a }}|{{ range(3) | list }}|{{ range(1, 7, 2) | list }}|{{ dict(a=1, b=2) }}", "1|[0, 1, 2]|[1, 3, 5]|{'a': 1, 'b': 2}" ]
    ]

let private statements =
    testList "statements" [
        cases "loop variables" [
            "{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.previtem }}/{% endfor %}",
            "10TrueFalse33/21FalseFalse321/32FalseTrue312/"
            "{{ loop is defined }}|{% for i in 'ab' %}{{ loop.cycle('x', 'y') }}{{ loop.nextitem }}{% endfor %}", "False|xby" ]
        cases "for-else, dict items, loop filter, break and continue" [
            "{% for x in [] %}no{% else %}empty{% endfor %}|{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in {'p': 1, 'q': 2} %}{{ k }}{% endfor %}", "empty|a=1;b=2;|pq"
            "{% for x in range(10) if x % 3 == 0 %}{{ x }}{{ loop.length }},{% endfor %}|{% for x in range(5) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}", "04,34,64,94,|02" ]
        cases "namespaces carry values out of loops; set does not" [
            "{% set ns = namespace(a=1, b='x') %}{% for i in [1, 2] %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}{{ ns.b }}|{% set y = 5 %}{% for i in [1] %}{% set y = 7 %}{% endfor %}{{ y }}", "4x|5"
            "{% for i in [1, 2] %}[{{ x }}]{% set x = i %}{% endfor %}", "[][]" ]
        cases "set forms and macros" [
            "{% set a, b = [1, 2] %}{{ b }}{{ a }}|{% set t = 1, 2 %}{{ t }}|{% set blk %}in  {{ 3 }}{% endset %}[{{ blk }}]", "21|(1, 2)|[in  3]"
            "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }} {{ greet(name='Cy') }}", "Hi Bob! Hi Al? Hi Cy!" ]
        cases "raw, generation and string literals" [
            """{% raw %}{{ not parsed }}{% endraw %}|{% generation %}gen {{ 1 }}{% endgeneration %}|{{ "adjacent" 'strings' }}|{{ 'it''s' }}""", "{{ not parsed }}|gen 1|adjacentstrings|its" ]
    ]

let private whitespace =
    testList "whitespace" [
        cases "trim_blocks and lstrip_blocks as transformers sets them; one trailing newline dropped" [
            "  {% if true %}\n    line\n  {% endif %}\n{{ 1 }}\n{# comment #}\nend\n", "    line\n1\nend" ]
        cases "minus strips all whitespace, plus keeps it" [
            "a  {%- if true -%}  b  {%- endif -%}  c|{{- ' d ' -}}|  {{ 'e' }}  |\n  {%+ if true %}p{% endif %}|{% if true +%}\nq{% endif %}", "abc| d |  e  |\n  p|\nq" ]
        test "jinja2 defaults keep block newlines" {
            let t = JinjaTemplate.Parse("{% if true %}\nx\n{% endif %}\n", "t", TemplateOptions.Jinja2Defaults)
            Expect.equal (t.Render noVars) "\nx\n" "no trim_blocks"
        }
    ]

let private filters =
    testList "filters and tests" [
        cases "string filters" [
            "{{ '  x y  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}|{{ 'a-b c(d' | title }}|{{ 'Up' | upper }}{{ 'Lo' | lower }}", "x y|hi|Hello World|Hello|A-B C(D|UPlo" ]
        cases "sequence filters" [
            "{{ [3, 1, 2] | join(', ') }}|{{ [1, 2] | first }}{{ [1, 2] | last }}|{{ 'abc' | list }}|{{ {'a': 1} | items | list }}|{{ [1, 2, 2, 'A', 'a'] | unique | list }}|{{ [1, 2, 3] | reverse | list }}|{{ 'abc' | reverse }}",
            "3, 1, 2|12|['a', 'b', 'c']|[('a', 1)]|[1, 2, 'A']|[3, 2, 1]|cba"
            "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'x' | safe }}|{{ [3, 1, 2] | sort | list }}|{{ [3, 1, 2] | sort(reverse=true) | list }}|{{ [1, 2, 3] | sum }}|{{ [4, 1, 7] | max }}{{ [4, 1, 7] | min }}|{{ {'b': 1, 'a': 2} | dictsort }}",
            "a\n  b\n\n  c|  a\n  b|x|[1, 2, 3]|[3, 2, 1]|6|71|[('a', 2), ('b', 1)]" ]
        cases "selectattr, rejectattr, select, reject, map" [
            "{{ [{'r': 'u', 'c': 1}, {'r': 'a', 'c': 2}, {'r': 'u', 'c': 3}] | selectattr('r', 'equalto', 'u') | map(attribute='c') | list }}|{{ [{'r': 'u'}, {'r': 'a'}] | rejectattr('r', 'eq', 'u') | list }}|{{ [1, 0, 2] | select | list }}|{{ [1, 2, 3] | reject('odd') | list }}|{{ ['a', 'b'] | map('upper') | join }}",
            "[1, 3]|[{'r': 'a'}]|[1, 2]|[2]|AB" ]
        cases "number filters" [
            "{{ '42' | int }}{{ 'x' | int }}{{ 3.9 | int }}{{ '1.5' | float }}{{ 2 | float }}|{{ 2.5 | round }}{{ 3.14159 | round(2) }}{{ 2.1 | round(0, 'ceil') }}|{{ -3 | abs }}|{{ 'one two  three' | wordcount }}|{{ [1, 2] | count }}|{{ 5 | string }}{{ [1] | string }}",
            "42031.52.0|2.03.143.0|3|3|2|5[1]" ]
        cases "tojson is transformers' json.dumps(ensure_ascii=False)" [
            """{{ {'a': 1, 'b': [1, 2]} | tojson }}|{{ 'é"\\\n</' | tojson }}|{{ [1, {'k': none}] | tojson(indent=2) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ [1, 2] | tojson(separators=(',', ':')) }}|{{ 1.0 | tojson }}""",
            "{\"a\": 1, \"b\": [1, 2]}|\"é\\\"\\\\\\n</\"|[\n  1,\n  {\n    \"k\": null\n  }\n]|{\"a\": 2, \"b\": 1}|[1,2]|1.0" ]
        cases "is tests" [
            "{{ 'x' is string }}{{ 1 is number }}{{ true is number }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}{{ none is none }}{{ true is true }}{{ 0 is false }}{{ 4 is even }}{{ 3 is odd }}{{ 2 is eq 2 }}{{ 5 is divisibleby 5 }}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}",
            "TrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrue"
            "{{ [] | first is defined }}|{{ 3 is in [1, 3] }}|{{ 2 is lt 3 }}|{{ none is not none }}", "False|True|True|False" ]
    ]

let private errors =
    testList "errors" [
        test "an unsupported filter names the template, line and filter" {
            throwsWith<TemplateException> (fun () -> JinjaTemplate.Parse("a\nb\n{{ x | xmlattr }}", "chat_template") |> ignore)
                [ "chat_template line 3: filter 'xmlattr' is not supported" ] "xmlattr"
        }
        test "unsupported and unknown statements are named" {
            throwsWith<TemplateException> (fun () -> render "x\n{% include 'other.jinja' %}" |> ignore) [ "t line 2: statement 'include' is not supported" ] "include"
            throwsWith<TemplateException> (fun () -> render "{% frobnicate %}" |> ignore) [ "t line 1: unknown statement 'frobnicate'" ] "unknown"
            throwsWith<TemplateException> (fun () -> render "{{ 1 is prime }}" |> ignore) [ "t line 1: test 'prime' is not supported" ] "test"
        }
        test "malformed templates name the line" {
            throwsWith<TemplateException> (fun () -> render "{% for x in y %}\n\n" |> ignore) [ "t line 2: unexpected end of template, expected 'else' or 'endfor'" ] "endfor"
            throwsWith<TemplateException> (fun () -> render "\n{{ 'open }}" |> ignore) [ "t line 2: string literal is not closed" ] "string"
            throwsWith<TemplateException> (fun () -> render "{{ (1 + }}" |> ignore) [ "t line 1: unexpected '}}'" ] "expression"
            throwsWith<TemplateException> (fun () -> render "{% if x %}{% endfor %}" |> ignore) [ "t line 1: unknown statement 'endfor'" ] "mismatched end"
        }
        test "runtime errors name the line and Python's wording" {
            throwsWith<TemplateException> (fun () -> render "\n\n{{ x.y }}" |> ignore) [ "t line 3: 'x' is undefined" ] "undefined attribute"
            throwsWith<TemplateException> (fun () -> render "{{ 1 + 'a' }}" |> ignore) [ "t line 1: unsupported operand type(s) for +: 'int' and 'str'" ] "type error"
            throwsWith<TemplateException> (fun () -> render "{{ [].append(1) }}" |> ignore) [ "t line 1: method 'list.append' is not supported" ] "sandbox"
            throwsWith<TemplateException> (fun () -> render "{% set s = 'x' %}{% set s.a = 1 %}" |> ignore) [ "cannot assign attribute on non-namespace object 's'" ] "namespace"
        }
        test "raise_exception throws TemplateRaisedException with the template's message" {
            let t = JinjaTemplate.Parse("line one\n{{ raise_exception('boom: ' ~ 42) }}", "chat_template")
            match (try t.Render noVars |> ignore; None with :? TemplateRaisedException as e -> Some e) with
            | None -> failtest "raise_exception did not throw"
            | Some e ->
                Expect.equal e.Message "boom: 42" "message"
                Expect.equal (e.TemplateName, e.Line) ("chat_template", 2) "where"
        }
    ]

let private fixtures = Path.Combine(repoRoot, "tests", "Research.Tests", "fixtures", "chat_templates")
let private fixture (name: string) = File.ReadAllText(Path.Combine(fixtures, name + ".jinja"))

let private chatApi =
    testList "chat api" [
        test "RenderChat renders Llama 2 chat with the system prompt folded into the first turn (strip() trims only its ends)" {
            let messages = [ ChatMessage("system", "Be brief."); ChatMessage("user", " Hi "); ChatMessage("assistant", "Hello."); ChatMessage("user", "Bye") ]
            let text = ChatTemplateRenderer.RenderChat(fixture "llama2", messages, true, "<s>", "</s>")
            Expect.equal text "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello. </s><s>[INST] Bye [/INST]" "llama2"
        }
        test "RenderChat passes extra variables and leaves a null bos_token undefined" {
            let text =
                ChatTemplateRenderer.RenderChat(fixture "qwen3", [ ChatMessage("user", "2+2?") ], true, null, "<|im_end|>",
                                                readOnlyDict [ "enable_thinking", box false ])
            Expect.equal text "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n" "qwen3, thinking off"
            Expect.equal (renderWith "[{{ bos_token }}]" []) "[]" "undefined prints empty"
        }
        test "TokenizerChatConfig reads a tokenizer_config.json's template and special tokens" {
            let json = """{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null,
                           "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{{ eos_token }}{% endfor %}"}]}"""
            let config = TokenizerChatConfig.FromJson json
            Expect.equal (config.SpecialTokens |> Seq.map (fun kv -> kv.Key, kv.Value) |> List.ofSeq) [ "bos_token", "<s>"; "eos_token", "</s>" ] "tokens"
            Expect.equal (ChatTemplateRenderer.RenderChat(config, [ ChatMessage("user", "hi") ], false)) "<s>user:hi</s>" "default template"
        }
    ]

// ---- conformance with python3-jinja2 ----

let private ensureJinja2 () =
    let imports () =
        use p = Process.Start(ProcessStartInfo("/usr/bin/python3", "-c \"import jinja2\"", RedirectStandardError = true))
        p.WaitForExit()
        p.ExitCode = 0
    if not (File.Exists "/usr/bin/python3" && imports ()) then
        let script = Path.Combine(repoRoot, "scripts", "setup", "python-refs.sh")
        use p = Process.Start(ProcessStartInfo("sh", $"\"{script}\"", RedirectStandardError = true))
        let err = p.StandardError.ReadToEnd()
        p.WaitForExit()
        if p.ExitCode <> 0 then failwithf "scripts/setup/python-refs.sh exited %d: %s" p.ExitCode err

type private Outcome =
    | Text of string
    | Raised of string
    | Failed of string

let private conversations = lazy (JsonNode.Parse(File.ReadAllText(Path.Combine(fixtures, "conversations.json"))))

let private templateNames () =
    [ for kv in conversations.Value["special_tokens"].AsObject() -> kv.Key ]

/// Every fixture template on every conversation, rendered by ONE python process.
let private pythonOutcomes =
    lazy (
        ensureJinja2 ()
        let conv = conversations.Value
        let specialTokens = conv["special_tokens"]
        let request = JsonObject()
        let templates = JsonArray()
        for name in templateNames () do
            let cases = JsonArray()
            for c in conv["conversations"].AsArray() do
                cases.Add(JsonObject(dict [
                    "messages", c["messages"].DeepClone()
                    "add_generation_prompt", c["add_generation_prompt"].DeepClone()
                    "special_tokens", specialTokens[name].DeepClone()
                    "extra", (match c["extra"] with null -> JsonObject() :> JsonNode | e -> e.DeepClone()) ]))
            let entry = JsonObject()
            entry["name"] <- JsonValue.Create(name)
            entry["template"] <- JsonValue.Create(fixture name)
            entry["cases"] <- cases
            templates.Add(entry)
        request["templates"] <- templates
        let script = Path.Combine(repoRoot, "tests", "reference", "render_chat_template.py")
        let psi = ProcessStartInfo("/usr/bin/python3", $"\"{script}\"", RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true)
        psi.StandardOutputEncoding <- Text.Encoding.UTF8
        psi.StandardInputEncoding <- Text.UTF8Encoding(false)
        use p = Process.Start psi
        let err = p.StandardError.ReadToEndAsync()
        p.StandardInput.Write(request.ToJsonString())
        p.StandardInput.Close()
        let out = p.StandardOutput.ReadToEnd()
        p.WaitForExit()
        if p.ExitCode <> 0 then failwithf "render_chat_template.py exited %d: %s" p.ExitCode err.Result
        let parsed = JsonNode.Parse(out)
        let results = parsed["results"].AsArray()
        [ for name, rs in Seq.zip (templateNames ()) results ->
            name,
            [ for r in rs.AsArray() ->
                if r["ok"].GetValue<bool>() then Text(r["text"].GetValue<string>())
                elif r["raised"].GetValue<bool>() then Raised(r["error"].GetValue<string>())
                else Failed(r["error"].GetValue<string>()) ] ]
        |> Map.ofList)

let private toJsonElement (node: JsonNode) = JsonDocument.Parse(node.ToJsonString()).RootElement.Clone()

let private csharpOutcome (template: JinjaTemplate) (tokens: IReadOnlyDictionary<string, string>) (case: JsonNode) =
    let messages = ResizeArray<obj>([ for m in case["messages"].AsArray() -> box (toJsonElement m) ])
    let extra =
        match case["extra"] with
        | null -> Dictionary<string, obj>()
        | e -> Dictionary<string, obj>(dict [ for kv in e.AsObject() -> kv.Key, box (toJsonElement kv.Value) ])
    try Text(ChatTemplateRenderer.RenderChat(template, messages, case["add_generation_prompt"].GetValue<bool>(), tokens, extra))
    with
    | :? TemplateRaisedException as e -> Raised e.Message
    | :? TemplateException as e -> Failed e.Message

let private conformance =
    testList "conformance with python3-jinja2" [
        for name in templateNames () ->
            test name {
                let conv = conversations.Value
                let specialTokens = conv["special_tokens"]
                let template = JinjaTemplate.Parse(fixture name, name)
                let tokens = Dictionary<string, string>(dict [ for kv in specialTokens[name].AsObject() -> kv.Key, kv.Value.GetValue<string>() ])
                let expected = pythonOutcomes.Value[name]
                let cases = conv["conversations"].AsArray() |> List.ofSeq
                Expect.equal cases.Length expected.Length "one python result per conversation"
                for case, want in List.zip cases expected do
                    let caseName = case["name"].GetValue<string>()
                    let what = $"{name}: {caseName}"
                    match csharpOutcome template tokens case, want with
                    | Failed _, Failed _ -> ()
                    | got, want -> Expect.equal got want what
            }
    ]

[<Tests>]
let tests = testList "Jinja" [ expressions; statements; whitespace; filters; errors; chatApi; conformance ]
