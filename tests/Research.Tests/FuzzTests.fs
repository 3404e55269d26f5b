/// Issue #20, tests (b): seeded in-process fuzzing of the readers of untrusted input (the safetensors header reader, JSONL
/// corpora, tokenizer configs, chat templates). Each case must end in success or the reader's own error, never another
/// exception, a crash or a hang; each target stops after a fixed number of cases or its time budget, whichever is first.
module Research.Tests.FuzzTests

open System
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.Text
open System.Text.Json.Nodes
open System.Threading.Tasks
open Expecto
open TorchSharp
open Research.Data
open Research.Models
open Research.Templates
open Research.Tests.TestUtil

let private budget = TimeSpan.FromSeconds 2.0     // per target; the whole list stays under 10 s on 2 cores
let private hang = TimeSpan.FromSeconds 10.0      // one case taking this long is a hang

/// Random edits of `bytes`: flip bits, overwrite bytes with "interesting" values, delete, duplicate or insert spans, truncate.
let mutate (rng: Random) (bytes: byte[]) (interesting: byte[][]) =
    let b = ResizeArray bytes
    for _ in 1 .. rng.Next(1, 6) do
        let at = if b.Count = 0 then 0 else rng.Next b.Count
        match rng.Next 6 with
        | 0 when b.Count > 0 -> b[at] <- b[at] ^^^ (1uy <<< rng.Next 8)
        | 1 when b.Count > 0 -> b[at] <- [| 0uy; 0xFFuy; 0x7Fuy; 0x80uy; byte '"'; byte '{'; byte '9' |][rng.Next 7]
        | 2 when b.Count > 0 -> b.RemoveRange(at, min (b.Count - at) (rng.Next(1, 16)))
        | 3 when b.Count > 0 -> b.InsertRange(at, b.GetRange(at, min (b.Count - at) (rng.Next(1, 32))))
        | 4 -> b.InsertRange(at, interesting[rng.Next interesting.Length])
        | _ when b.Count > 0 -> b.RemoveRange(at, b.Count - at)
        | _ -> ()
    b.ToArray()

/// Structure-aware edits of a JSON document: 1 to 3 times, a random node is replaced by an odd value (null, a wrong type,
/// an out-of-range number, another node of the document) or removed. Reaches the checks behind the JSON parser.
let mutateJson (rng: Random) (bytes: byte[]) =
    let root = JsonNode.Parse(bytes)
    for _ in 1 .. rng.Next(1, 4) do
        let all = ResizeArray<JsonNode>()
        let rec walk (n: JsonNode) =
            all.Add n
            match n with
            | :? JsonObject as o -> for kv in o do if not (isNull kv.Value) then walk kv.Value
            | :? JsonArray as a -> for x in a do if not (isNull x) then walk x
            | _ -> ()
        walk root
        let victim = all[rng.Next(1, max 2 all.Count) |> min (all.Count - 1)]
        let odd () : JsonNode =
            match rng.Next 12 with
            | 0 -> null
            | 1 -> JsonValue.Create(-1)
            | 2 -> JsonValue.Create(Int32.MaxValue)
            | 3 -> JsonValue.Create(4294967296L)
            | 4 -> JsonValue.Create(1e30)
            | 5 -> JsonValue.Create("")
            | 6 -> JsonArray()
            | 7 -> JsonObject()
            | 8 -> JsonValue.Create(true)
            | 9 -> JsonValue.Create("<s>")
            | _ -> all[rng.Next all.Count].DeepClone()
        match victim.Parent with
        | :? JsonObject as o ->
            let name = victim.GetPropertyName()
            if rng.Next 4 = 0 then o.Remove name |> ignore else o[name] <- odd ()
        | :? JsonArray as a ->
            let i = victim.GetElementIndex()
            if rng.Next 4 = 0 then a.RemoveAt i else a[i] <- odd ()
        | _ -> ()
    Encoding.UTF8.GetBytes(root.ToJsonString())

/// Runs `case i` for seeded cases until `count` or the budget; `allowed` says which exceptions are the reader's errors.
let private fuzz (name: string) (count: int) (allowed: exn -> bool) (case: Random -> unit) =
    let clock = Stopwatch.StartNew()
    let mutable i = 0
    let mutable errors = 0
    while i < count && clock.Elapsed < budget do
        let rng = Random(i * 7919 + 17)
        let task = Task.Run(fun () -> try case rng; None with e -> Some e)
        if not (task.Wait hang) then failtestf "%s: case %d (Random(%d)) hangs" name i (i * 7919 + 17)
        match task.Result with
        | Some e when not (allowed e) -> failtestf "%s: case %d (Random(%d)) threw %s" name i (i * 7919 + 17) (string e)
        | Some _ -> errors <- errors + 1
        | None -> ()
        i <- i + 1
    eprintfn "fuzz %s: %d cases, %d refused, %.2f s" name i errors clock.Elapsed.TotalSeconds
    Expect.isGreaterThan i 20 $"{name}: enough cases ran"
    Expect.isGreaterThan errors 0 $"{name}: some mutations were refused (the fuzz reaches the checks)"

let private ascii (s: string) = Encoding.UTF8.GetBytes s

/// Merge configs in the shapes mergekit users write: block maps and lists, "- key:" items, flow maps and lists, gradients,
/// filter rules, quoted scalars, comments.
let private mergeSeeds =
    [| "# ties over two models\nmerge_method: ties\nbase_model: runs/base\nmodels:\n  - model: runs/math\n    parameters: {weight: 1.0, density: 0.5}\n" +
       "  - model: 'runs/code'\n    parameters:\n      weight: [0, 0.5, 1]\n      density: [{filter: mlp, value: 0.3}, {filter: \"re:layers\\\\.[0-9]+\", value: 0.6}, {value: 0.6}]\n" +
       "parameters:\n  normalize: true\n  int8_mask: false\ndtype: bfloat16\nseed: 3\n"
       "merge_method: slerp\nbase_model: a\nmodels:\n- model: a\n- model: b\nparameters:\n  t:\n    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n    - value: 0.5\n"
       "merge_method: dare_ties\nbase_model: \"a\"\nmodels: [{model: b, parameters: {weight: 0.5, density: 0.7}}, {model: c}]\nparameters: {rescale: l1, lambda: 1.0}\nseed: 0 # comment\n" |]

/// A Hugging Face tokenizer directory small enough to load in a millisecond: a byte-level BPE tokenizer.json with added
/// tokens and a TemplateProcessing post-processor, a tokenizer_config.json with a chat template, a special_tokens_map.json
/// and a generation_config.json.
let private hfSeeds =
    let vocab = String.Join(", ", [ for i, t in List.indexed [ "<s>"; "</s>"; "a"; "b"; "c"; "\u0120"; "ab"; "\u0120a"; "abc" ] -> $"\"{t}\": {i}" ])
    [ Tokenizers.JsonFile,
      "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n" +
      " \"added_tokens\": [{\"id\": 0, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},\n" +
      "  {\"id\": 1, \"content\": \"</s>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},\n" +
      "  {\"id\": 9, \"content\": \"<think>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": false}],\n" +
      " \"normalizer\": null,\n \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n" +
      " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n" +
      "  \"pair\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}],\n" +
      "  \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [0], \"tokens\": [\"<s>\"]}}},\n" +
      " \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n" +
      $" \"model\": {{\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n" +
      $"  \"vocab\": {{{vocab}}},\n  \"merges\": [\"a b\", \"\u0120 a\", \"ab c\"]}}}}\n"
      Tokenizers.ConfigFile,
      "{\"tokenizer_class\": \"PreTrainedTokenizerFast\", \"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\", \"special\": true}, \"add_bos_token\": true,\n" +
      " \"model_max_length\": 64, \"chat_template\": \"{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}\"}\n"
      HfTokenizerConfig.SpecialTokensMapFile, "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"pad_token\": {\"content\": \"</s>\"}, \"unk_token\": null}\n"
      HfTokenizerConfig.GenerationConfigFile, "{\"bos_token_id\": 0, \"eos_token_id\": [1, 9]}\n" ]

[<Tests>]
let tests =
    testList "ReliabilityFuzz" [
        testCase "the safetensors reader refuses a mutated file with its own error, or reads it" <| fun _ ->
            let dir = tempDir "fuzz-st"
            let seed = Path.Combine(dir, "seed.safetensors")
            use a = torch.arange(6L, dtype = torch.float32).reshape(2L, 3L)
            use b = torch.tensor([| true; false |])
            use c = torch.zeros(0L, dtype = torch.bfloat16)
            Safetensors.Save(seed, [ KeyValuePair("a", a); KeyValuePair("b", b); KeyValuePair("c", c) ], readOnlyDict [ "format", "pt" ])
            let bytes = File.ReadAllBytes seed
            let interesting = [| ascii "\"shape\":[99999999999,99999999999]"; ascii "\"dtype\":\"F64\""; ascii "\"data_offsets\":[0,18446744073709551615]"
                                 ascii "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["; BitConverter.GetBytes(Int64.MaxValue); ascii "\\ud800" |]
            let mutable n = 0
            fuzz "safetensors" 400 (fun e -> e :? SafetensorsException) (fun rng ->
                let path = Path.Combine(dir, $"{Threading.Interlocked.Increment(&n)}.safetensors")
                File.WriteAllBytes(path, mutate rng bytes interesting)
                use f = SafetensorsFile.Open path
                for e in f.Entries do
                    use t = f.Read e.Name
                    use v = f.View e.Name
                    ())

        testCase "JSONL corpora, SFT, preference and multiple-choice readers refuse a mutated file with a CorpusException, or read it" <| fun _ ->
            let dir = tempDir "fuzz-jsonl"
            let seed =
                ascii ("{\"text\": \"caf\u00e9 \u65e5\u672c\", \"prompt\": \"q\", \"completion\": \"a\", \"chosen\": \"x\", \"rejected\": \"y\", " +
                       "\"question\": \"q?\", \"choices\": [\"a\", \"b\"], \"answer\": 1, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n" +
                       "{\"text\": \"second\", \"prompt\": \"p\", \"completion\": \"c\", \"chosen\": \"u\", \"rejected\": \"v\", \"question\": \"w\", \"choices\": [\"c\"], \"answer\": 0}\n")
            let interesting = [| [| 0xC3uy |]; [| 0xEDuy; 0xA0uy; 0x80uy |]; ascii "\\ud800"; ascii "\n"; ascii "\r\n"; ascii (String.replicate 100 "[")
                                 ascii "\"answer\": -5"; ascii "\"choices\": []"; ascii "\"role\": \"tool\""; ascii "null"; [| 0xEFuy; 0xBBuy; 0xBFuy |] |]
            let readers : (string -> unit) list =
                [ (fun p -> Corpus.FromJsonl p |> ignore); (fun p -> SftData.Read p |> ignore)
                  (fun p -> PreferenceData.Read p |> ignore); (fun p -> McData.Read p |> ignore) ]
            let mutable n = 0
            fuzz "jsonl" 400 (fun e -> e :? CorpusException) (fun rng ->
                let path = Path.Combine(dir, $"{Threading.Interlocked.Increment(&n)}.jsonl")
                File.WriteAllBytes(path, mutate rng seed interesting)
                readers[rng.Next readers.Length] path)

        testCase "tokenizer_config.json: a mutated file is a TokenizerException, or loads" <| fun _ ->
            let dir = tempDir "fuzz-tok"
            ByteTokenizer.Instance.Save dir
            let seed = File.ReadAllBytes(Path.Combine(dir, Tokenizers.ConfigFile))
            let interesting = [| ascii "\"research_tokenizer\": \"gpt2\""; ascii "\"tokenizer_class\": \"GPT2Tokenizer\""; ascii "[]"; [| 0xFFuy |]; ascii "\"eos_token\": 5" |]
            let mutable n = 0
            fuzz "tokenizer config" 300 (fun e -> e :? TokenizerException) (fun rng ->
                let d = Path.Combine(dir, string (Threading.Interlocked.Increment(&n)))
                Directory.CreateDirectory d |> ignore
                File.WriteAllBytes(Path.Combine(d, Tokenizers.ConfigFile), mutate rng seed interesting)
                Tokenizers.Load d |> ignore)

        testCase "merge configs: a mutated YAML file is an InvalidDataException naming the file, or reads" <| fun _ ->
            let dir = tempDir "fuzz-yaml"
            let seeds = mergeSeeds |> Array.map ascii
            let interesting = [| "{"; "}"; "["; "]"; ": "; ":"; "- "; "\n"; "\n  "; "    "; "\t"; "'"; "\""; "#"; ","; "&a "; "*a"; "!!str "; "|"; ">"
                                 "---\n"; "...\n"; "\\"; "~"; "null"; "1e400"; "-.inf"; ".nan"; "NaN"; "{a: {b: 1}: 2}"; "[{b: [1, {c: "; "re:(a+)+$"
                                 "re:(a)\\1"; "? "; "%YAML 1.2\n"; "model: x\n"; "weight: "; String.replicate 80 "["; String.replicate 80 "- "
                                 String.replicate 40 "{a: "; "\u00e9"; "\r\n"; "\u2028"; "\"\\u00\""; "\"\\x41\""; "seed: 1e300\n" |] |> Array.map ascii
            for seed in mergeSeeds do Research.Stages.Merge.MergeConfig.FromYaml seed |> ignore   // the seeds themselves read
            let mutable n = 0
            fuzz "merge yaml" 4000 (fun e -> e :? InvalidDataException && e.Message.StartsWith(dir, StringComparison.Ordinal)) (fun rng ->
                let path = Path.Combine(dir, $"{Threading.Interlocked.Increment(&n)}.yaml")
                File.WriteAllBytes(path, mutate rng seeds[rng.Next seeds.Length] interesting)
                Research.Stages.Merge.MergeConfig.Load path |> ignore)

        testCase "Hugging Face tokenizer files and their chat template: a mutated file is a TokenizerException naming it, a template error, or loads and runs" <| fun _ ->
            let dir = tempDir "fuzz-hf"
            let seeds = hfSeeds |> List.map (fun (f, text) -> f, ascii text) |> Array.ofList
            // the same config with its template in the list form ([{name, template}]) and in chat_template.jinja
            let config = JsonNode.Parse(snd seeds[1]).AsObject()
            let template = config["chat_template"].GetValue<string>()
            let listed = config.DeepClone().AsObject()
            listed["chat_template"] <- JsonArray(JsonObject(dict [ "name", JsonValue.Create "tool_use" :> JsonNode; "template", JsonValue.Create "x" ]),
                                                 JsonObject(dict [ "name", JsonValue.Create "default" :> JsonNode; "template", JsonValue.Create template ]))
            let bare = config.DeepClone().AsObject()
            bare.Remove "chat_template" |> ignore
            let configs = [| [ Tokenizers.ConfigFile, snd seeds[1] ]; [ Tokenizers.ConfigFile, ascii (listed.ToJsonString()) ]
                             [ Tokenizers.ConfigFile, ascii (bare.ToJsonString()); HfTokenizerConfig.ChatTemplateFile, ascii template ] |]
            let interesting = [| "null"; "[]"; "{}"; "-1"; "2147483647"; "4294967296"; "1e999"; "\"\""; "\"\\ud800\""; "[[]]"; "[\"a\"]"; "{\"a\": 1}"
                                 "\"type\": \"Unigram\""; "\"type\": \"WordLevel\""; "\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\"}, {\"type\": \"BertProcessing\", \"cls\": [\"<s>\"], \"sep\": []}]"
                                 "\"vocab\": [[\"a\", -1.0], [\"b\"], []]"; "\"id\": 99999999"; "\"ids\": [99999999]"; "\"content\": null"; "\"special\": 1"
                                 "\"chat_template\": [{\"name\": 5, \"template\": 1}]"; "\"chat_template\": [{\"name\": \"default\", \"template\": null}, 3]"
                                 "{% for"; "{{"; "}}"; "raise_exception('x')"; "\"eos_token_id\": [\"x\"]"; "\"model_max_length\": 1e30"; [| 0xFFuy |] |> Encoding.Latin1.GetString |] |> Array.map ascii
            let messages = [ Research.Data.ChatMessage(ChatRole.System, "s", false); Research.Data.ChatMessage(ChatRole.User, "q", false); Research.Data.ChatMessage(ChatRole.Assistant, "a b", true) ]
            let run (d: string) =
                let t = Tokenizers.Load d
                for text in [ "abc ab <s> c</s><think>"; "\u00e9\u65e5 a"; "" ] do
                    t.Decode(t.Encode text) |> ignore
                    match t with
                    | :? HfTokenizer as hf -> hf.DecodeWithSpecial(hf.EncodeWithSpecial text) |> ignore
                    | _ -> ()
                if (match t with :? HfTokenizer as hf -> not (isNull hf.ChatTemplate) | _ -> false) then
                    ModelChatTemplate.Of(t).RenderText(messages, true) |> ignore
            let filesOf (variant: int) = Array.append [| seeds[0]; seeds[2]; seeds[3] |] (Array.ofList configs[variant])
            for variant in 0 .. configs.Length - 1 do                     // the seeds themselves load and render
                let seedDir = Path.Combine(dir, $"seed{variant}")
                Directory.CreateDirectory seedDir |> ignore
                for f, bytes in filesOf variant do File.WriteAllBytes(Path.Combine(seedDir, f), bytes)
                run seedDir
            let mutable n = 0
            fuzz "hf tokenizer" 2000 (fun e -> (e :? TokenizerException && e.Message.Contains(dir: string)) || e :? TemplateException || e :? TemplateRaisedException) (fun rng ->
                let d = Path.Combine(dir, string (Threading.Interlocked.Increment(&n)))
                Directory.CreateDirectory d |> ignore
                let files = filesOf (rng.Next configs.Length)
                let victim = if rng.Next 2 = 0 then 0 else rng.Next files.Length   // tokenizer.json half the time
                for i, (f, bytes) in Array.indexed files do
                    let edit () = if rng.Next 2 = 0 || not (f.EndsWith ".json") then mutate rng bytes interesting else mutateJson rng bytes
                    File.WriteAllBytes(Path.Combine(d, f), if i = victim then edit () else bytes)
                run d)

        testCase "what the fuzz found: a lone surrogate in a multiple-choice item or in a key, a key given twice in a tokenizer or model config" <| fun _ ->
            let dir = tempDir "fuzz-found"
            let mc = Path.Combine(dir, "mc.jsonl")
            File.WriteAllText(mc, "{\"question\": \"q\", \"choices\": [\"a\", \"\\ud800\"], \"answer\": 0}\n")
            throwsWith<CorpusException> (fun () -> McData.Read mc |> ignore) [ $"{mc}:1"; "surrogate" ] "multiple choice"
            let pref = Path.Combine(dir, "pref.jsonl")
            File.WriteAllText(pref, "{\"prompt\": \"q\", \"\\udc00x\": 1, \"chosen\": \"a\", \"rejected\": \"b\"}\n")
            throwsWith<CorpusException> (fun () -> PreferenceData.Read pref |> ignore) [ $"{pref}:1"; "key is not valid text" ] "a lone surrogate in a key"
            File.WriteAllText(Path.Combine(dir, Tokenizers.ConfigFile), "{\"research_tokenizer\": \"byte\", \"pad_token\": \"a\", \"pad_token\": \"b\"}")
            throwsWith<TokenizerException> (fun () -> Tokenizers.Load dir |> ignore) [ Tokenizers.ConfigFile; "pad_token" ] "tokenizer config"
            let config = Path.Combine(dir, "config.json")
            File.WriteAllText(config, "{\"model_type\": \"llama\", \"hidden_size\": 32, \"hidden_size\": 64}")
            throwsWith<InvalidDataException> (fun () -> ModelConfig.Load config |> ignore) [ config; "hidden_size" ] "model config"

        testCase "what the fuzz found in merge configs: a flow map as a key, a flow nest the YAML scanner trips on; anchors refused" <| fun _ ->
            let dir = tempDir "fuzz-found-yaml"
            let path = Path.Combine(dir, "merge.yaml")
            File.WriteAllText(path, "merge_method: linear\nmodels: [{model: a, parameters: {{weight: 1}: 2}}]\n")
            throwsWith<InvalidDataException> (fun () -> Research.Stages.Merge.MergeConfig.Load path |> ignore) [ path; "YAML line 2"; "keys must be strings" ] "a map as a key"
            // YamlDotNet 18.1's scanner throws InvalidOperationException on this unterminated flow nest
            File.WriteAllText(path, "merge_method: dare_ties\nparameters: {rescale: " + String.replicate 80 "[" + "l1, lambda: 1.0}\nseed: 0comment\n")
            throwsWith<InvalidDataException> (fun () -> Research.Stages.Merge.MergeConfig.Load path |> ignore) [ path; "YAML line 2"; "malformed YAML" ] "an unterminated flow nest"
            // a seed no long holds read as long.MinValue, so 1e300 and 1e301 made the same config
            for seed in [ "1e300"; "-1e19"; "1e16" ] do
                throwsWith<InvalidDataException> (fun () -> Research.Stages.Merge.MergeConfig.FromYaml $"merge_method: linear\nmodels: [{{model: a}}]\nseed: {seed}\n" |> ignore)
                    [ "YAML line 3"; "seed must be an integer" ] $"seed {seed}"
            Expect.equal (Research.Stages.Merge.MergeConfig.FromYaml "merge_method: linear\nmodels: [{model: a}]\nseed: -9007199254740992\n").Seed -9007199254740992L "the edge still reads"
            // an alias can blow a small file up into a huge tree: anchors and aliases are refused with their line
            File.WriteAllText(path, "merge_method: linear\nmodels:\n  - &m {model: a}\n  - *m\n")
            throwsWith<InvalidDataException> (fun () -> Research.Stages.Merge.MergeConfig.Load path |> ignore) [ path; "YAML line 3"; "anchors" ] "an anchor"

        testCase "what the fuzz found in Hugging Face tokenizer files: ids that disagree with the library, out of range or null, bad template lists, a template file" <| fun _ ->
            let write (name: string) (edit: string -> string -> string) =
                let d = tempDir $"fuzz-found-hf-{name}"
                for f, text in hfSeeds do File.WriteAllText(Path.Combine(d, f), edit f text)
                d
            let json = Tokenizers.JsonFile
            let inJson (a: string) (b: string) f (text: string) = if f = json then text.Replace(a, b) else text
            let fails (d: string) (fragments: string list) what =
                throwsWith<TokenizerException> (fun () -> Tokenizers.Load d |> ignore) (Path.Combine(d, json) :: fragments) what
            // a vocabulary id given twice: the library numbers <think> 10, the file says 9
            fails (write "dup" (inJson "\"abc\": 8" "\"abc\": 8, \"aab\": 6")) [ "added token \"<think>\" has id 9"; "[0, 10]" ] "ids the library numbers otherwise"
            fails (write "max" (inJson "\"abc\": 8" "\"abc\": 2147483647")) [ "\"abc\""; "2147483647" ] "an id past any vocabulary"
            fails (write "neg" (inJson "\"id\": 9" "\"id\": -1")) [ "\"<think>\""; "-1" ] "a negative id"
            fails (write "null" (inJson "\"content\": \"<think>\"" "\"content\": null")) [ "added_tokens content should be a string" ] "a null content"
            fails (write "special" (inJson "{\"SpecialToken\": {\"id\": \"<s>\"" "{\"SpecialToken\": {\"id\": null")) [ "cannot read" ] "a null special token name"
            let listed = write "list" (fun f text -> if f = Tokenizers.ConfigFile then text.Replace("\"chat_template\": \"", "\"chat_template\": [{\"name\": 5, \"template\": \"") .Replace("endif %}\"}", "endif %}\"}]}") else text)
            throwsWith<TokenizerException> (fun () -> Tokenizers.Load listed |> ignore) [ Path.Combine(listed, Tokenizers.ConfigFile); "\"name\" and a \"template\" string" ] "a template list entry with a number for a name"
            // the template in chat_template.jinja, none in tokenizer_config.json: template "model" renders it
            let file = write "jinja" (fun f text ->
                if f <> Tokenizers.ConfigFile then text
                else let o = JsonNode.Parse(text).AsObject() in o.Remove "chat_template" |> ignore; o.ToJsonString())
            let configText = hfSeeds |> List.find (fst >> (=) Tokenizers.ConfigFile) |> snd
            let template = (JsonNode.Parse configText).["chat_template"].GetValue<string>()
            File.WriteAllText(Path.Combine(file, HfTokenizerConfig.ChatTemplateFile), template)
            let rendered = ModelChatTemplate.Of(Tokenizers.Load file).RenderText([ Research.Data.ChatMessage(ChatRole.User, "q", false) ], true)
            Expect.equal rendered "<s>user: q</s>assistant: " "rendered from chat_template.jinja with the config's tokens"

        testCase "what the fuzz found in chat templates: an escape beyond U+10FFFF, a surrogate escape" <| fun _ ->
            for escape in [ "\\U00110000"; "\\UFFFFFFFF" ] do
                throwsWith<TemplateException> (fun () -> JinjaTemplate.Parse($"{{{{ '{escape}' }}}}", "chat_template", TemplateOptions.Transformers) |> ignore)
                    [ "chat_template line 1"; "not a Unicode code point" ] escape
            let t = JinjaTemplate.Parse("{{ '\\ud800' }}", "chat_template", TemplateOptions.Transformers)
            Expect.equal (ChatTemplateRenderer.RenderChat(t, ResizeArray<obj>(), false, readOnlyDict [])) (string (char 0xD800)) "a lone surrogate, as Python keeps it"

        testCase "chat templates: a mutated template is a TemplateException, a raised error, or renders" <| fun _ ->
            let fixtures = Path.Combine(__SOURCE_DIRECTORY__, "fixtures", "chat_templates")
            let seeds = [| for f in Directory.GetFiles(fixtures, "*.jinja") |> Array.sort -> File.ReadAllBytes f |]
            let interesting = [| "{%"; "%}"; "{{"; "}}"; "{#"; "#}"; "{% for m in messages %}"; "{% endfor %}"; "{% if"; "{% endif %}"; "|"; "|tojson"
                                 "("; ")"; "["; "]"; "'"; "\""; "."; "loop."; "raise_exception('x')"; "{% set x = "; "{% macro m() %}"; "{{ m() }}"; "-" |] |> Array.map ascii
            let messages : obj list = [ ChatMessage("system", "s"); ChatMessage("user", "q"); ChatMessage("assistant", "a") ]
            fuzz "chat template" 600 (fun e -> e :? TemplateException || e :? TemplateRaisedException) (fun rng ->
                let source = Encoding.UTF8.GetString(mutate rng seeds[rng.Next seeds.Length] interesting)
                let t = JinjaTemplate.Parse(source, "chat_template", TemplateOptions.Transformers)
                ChatTemplateRenderer.RenderChat(t, ResizeArray messages, true, readOnlyDict [ "bos_token", "<s>"; "eos_token", "</s>" ]) |> ignore)
    ]
