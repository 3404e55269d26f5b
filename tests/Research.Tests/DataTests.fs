module Research.Tests.DataTests

open System
open System.IO
open Expecto
open Research.Data

let tempDir () =
    let d = Path.Combine(Path.GetTempPath(), "research-data-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory d |> ignore
    d

let withTemp f =
    let d = tempDir ()
    try f d finally (try Directory.Delete(d, true) with _ -> ())

let throwsWith<'e when 'e :> exn> (parts: string list) (f: unit -> unit) =
    let msg =
        try f (); failtest "expected an exception"
        with
        | :? 'e as e -> e.Message
    for p in parts do
        Expect.stringContains msg p "error message"

let tokenizerTests =
    testList "Tokenizers" [
        test "byte round-trips non-ASCII and uses ids 0..255 for bytes" {
            let tok = ByteTokenizer.Instance
            let text = "héllo, 世界 🙂\n"
            let ids = tok.Encode text
            Expect.equal ids.Length (Text.Encoding.UTF8.GetByteCount text) "one id per UTF-8 byte"
            Expect.equal ids.[1] 0xC3 "é starts with byte C3"
            Expect.equal (tok.Decode ids) text "round trip"
        }
        test "byte specials are 256..258, vocab 259, dropped by Decode; invalid UTF-8 becomes U+FFFD" {
            let tok = ByteTokenizer.Instance
            Expect.equal (tok.BosId, tok.EosId, tok.PadId, tok.VocabSize) (256, 257, 258, 259) "ids"
            Expect.equal (tok.Decode [ 256; 104; 105; 257; 258 ]) "hi" "specials dropped"
            Expect.equal (tok.Decode [ 0xFF; 104 ]) "\uFFFDh" "invalid byte"
        }
        test "gpt2 encodes Hello world to [15496; 995] and round-trips" {
            let tok = Gpt2Tokenizer.Instance
            Expect.equal (tok.Encode "Hello world") [| 15496; 995 |] "known ids"
            Expect.equal (tok.EosId, tok.BosId, tok.PadId, tok.VocabSize) (50256, 50256, 50256, 50257) "specials"
            let text = "Grüße, the quick brown fox — 42!"
            Expect.equal (tok.Decode(Array.append (tok.Encode text) [| 50256 |])) text "round trip, eos dropped"
        }
        test "save then load gives the same tokenizer; missing/unknown config names the file" {
            withTemp (fun d ->
                for name in [ "byte"; "gpt2" ] do
                    let dir = Path.Combine(d, name)
                    (Tokenizers.ByName name).Save dir
                    let cfg = File.ReadAllText(Path.Combine(dir, "tokenizer_config.json"))
                    for key in [ "tokenizer_class"; "bos_token"; "eos_token"; "pad_token"; "research_tokenizer" ] do
                        Expect.stringContains cfg key "config field"
                    Expect.isTrue (File.Exists(Path.Combine(dir, "tokenizer.json"))) "tokenizer.json"
                    let back = Tokenizers.Load dir
                    Expect.equal back.Name name "name"
                    Expect.equal back.VocabSize (Tokenizers.ByName name).VocabSize "vocab"
                throwsWith<TokenizerException> [ "tokenizer_config.json"; "nothere" ] (fun () ->
                    Tokenizers.Load(Path.Combine(d, "nothere")) |> ignore)
                let bad = Path.Combine(d, "bad")
                Directory.CreateDirectory bad |> ignore
                File.WriteAllText(Path.Combine(bad, "tokenizer_config.json"), """{"research_tokenizer":"sentencepiece"}""")
                throwsWith<TokenizerException> [ "tokenizer_config.json"; "sentencepiece" ] (fun () ->
                    Tokenizers.Load bad |> ignore)
                throwsWith<TokenizerException> [ "llama" ] (fun () -> Tokenizers.ByName "llama" |> ignore))
        }
    ]

[<Tests>]
let tests = testList "Data" [ tokenizerTests ]
