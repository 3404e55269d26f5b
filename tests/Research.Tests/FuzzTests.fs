/// Issue #20, tests (b): seeded in-process fuzzing of the readers of untrusted input (the safetensors header reader, JSONL
/// corpora, tokenizer configs, chat templates). Each case must end in success or the reader's own error, never another
/// exception, a crash or a hang; each target stops after a fixed number of cases or its time budget, whichever is first.
module Research.Tests.FuzzTests

open System
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.Text
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
        | Some e when not (allowed e) -> failtestf "%s: case %d (Random(%d)) threw %s: %s" name i (i * 7919 + 17) (e.GetType().Name) e.Message
        | Some _ -> errors <- errors + 1
        | None -> ()
        i <- i + 1
    Expect.isGreaterThan i 20 $"{name}: enough cases ran"
    Expect.isGreaterThan errors 0 $"{name}: some mutations were refused (the fuzz reaches the checks)"

let private ascii (s: string) = Encoding.UTF8.GetBytes s

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
