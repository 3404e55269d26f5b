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

let write (path: string) (text: string) =
    Directory.CreateDirectory(Path.GetDirectoryName path |> string) |> ignore
    File.WriteAllText(path, text)

let corpusTests =
    testList "Corpus" [
        test "JSONL errors name file and line: malformed, not an object, missing field" {
            withTemp (fun d ->
                let p = Path.Combine(d, "x.jsonl")
                write p "{\"text\": \"a\"}\n\n{\"text\": oops}\n"
                throwsWith<CorpusException> [ "x.jsonl:3"; "malformed JSON" ] (fun () -> Corpus.FromJsonl p |> ignore)
                write p "{\"text\": \"a\"}\n[1, 2]\n"
                throwsWith<CorpusException> [ "x.jsonl:2"; "object" ] (fun () -> Corpus.FromJsonl p |> ignore)
                write p "{\"text\": \"a\"}\n{\"body\": \"b\"}\n"
                throwsWith<CorpusException> [ "x.jsonl:2"; "no string field \"text\"" ] (fun () -> Corpus.Load p |> ignore)
                write p "{\"text\": 5}\n"
                throwsWith<CorpusException> [ "x.jsonl:1"; "no string field \"text\"" ] (fun () -> Corpus.FromJsonl p |> ignore)
                write p "{\"body\": \"one\"}\n\n{\"body\": \"two\", \"n\": 2}\n"
                let c = Corpus.FromJsonl(p, "body")
                Expect.equal [ for doc in c.Documents -> doc.Text, doc.Line ] [ "one", 1; "two", 3 ] "documents and lines"
                Expect.equal c.Name "x" "name")
        }
        test "missing and empty corpora are errors naming the path" {
            withTemp (fun d ->
                let missing = Path.Combine(d, "nope.jsonl")
                throwsWith<CorpusException> [ missing; "not found" ] (fun () -> Corpus.Load missing |> ignore)
                throwsWith<CorpusException> [ missing ] (fun () -> Corpus.FromTextFile missing |> ignore)
                let empty = Path.Combine(d, "empty.txt")
                write empty "  \n\n\t"
                throwsWith<CorpusException> [ empty; "empty" ] (fun () -> Corpus.Load empty |> ignore)
                let ej = Path.Combine(d, "e.jsonl")
                write ej "\n{\"text\": \"   \"}\n"
                throwsWith<CorpusException> [ ej; "empty" ] (fun () -> Corpus.Load ej |> ignore)
                let folder = Path.Combine(d, "f")
                Directory.CreateDirectory folder |> ignore
                throwsWith<CorpusException> [ folder ] (fun () -> Corpus.Load folder |> ignore))
        }
        test "text file: one document unless form feeds or <|endoftext|> lines separate them" {
            withTemp (fun d ->
                let p = Path.Combine(d, "a.txt")
                write p "para one\n\npara two\n"
                let c = Corpus.Load p
                Expect.equal [ for x in c.Documents -> x.Text ] [ "para one\n\npara two\n" ] "whole file"
                write p "first\n<|endoftext|>\r\nsecond <|endoftext|> inline\n\n<|endoftext|>\n\nthird\fforth\n<|endoftext|>"
                let c = Corpus.Load p
                Expect.equal [ for x in c.Documents -> x.Text ] [ "first\n"; "second <|endoftext|> inline\n\n"; "\nthird"; "forth\n" ] "split"
                Expect.equal [ for x in c.Documents -> x.Line ] [ 1; 3; 7; 7 ] "lines")
        }
        test "folder: every *.txt recursively in ordinal order, one document each" {
            withTemp (fun d ->
                write (Path.Combine(d, "b.txt")) "B"
                write (Path.Combine(d, "a", "z.txt")) "AZ"
                write (Path.Combine(d, "B.txt")) "upper B"
                write (Path.Combine(d, "a.txt")) "A"
                write (Path.Combine(d, "notes.md")) "ignored"
                write (Path.Combine(d, "c.txt")) "  "
                let c = Corpus.Load d
                Expect.equal [ for x in c.Documents -> x.Text ] [ "upper B"; "A"; "AZ"; "B" ] "ordinal order: B.txt < a.txt < a/z.txt < b.txt"
                Expect.equal (Path.GetFileName c.Documents.[2].Source) "z.txt" "source")
        }
        test "fingerprint depends on texts only and is stable" {
            let docs texts src = [| for t in texts -> Document(t, src, 1) |]
            let a = Corpus("a", docs [ "x"; "y" ] "one")
            let b = Corpus("b", docs [ "x"; "y" ] "two")
            let c = Corpus("c", docs [ "xy" ] "one")
            Expect.equal a.Fingerprint b.Fingerprint "same texts"
            Expect.notEqual a.Fingerprint c.Fingerprint "boundaries matter"
            Expect.equal a.Fingerprint.Length 64 "sha-256 hex"
            // sha256(le64 1 ++ "x" ++ le64 1 ++ "y"), computed independently
            Expect.equal a.Fingerprint "946a0b44bba82efb145c58530ff7b3d46d7f81942ac6eabcf443d0e19fd26958" "pinned"
        }
        test "split is deterministic, seed-dependent, disjoint and covering, both parts non-empty" {
            let c = Corpus("c", [| for i in 0 .. 99 -> Document(sprintf "doc %d" i, "s", i + 1) |])
            let texts (x: Corpus) = [ for d in x.Documents -> d.Text ]
            let struct (tr1, va1) = c.Split(0.1, 1)
            let struct (tr1b, va1b) = c.Split(0.1, 1)
            let struct (_, va2) = c.Split(0.1, 2)
            Expect.equal (texts va1) (texts va1b) "same seed, same split"
            Expect.equal (texts tr1) (texts tr1b) "same seed, same train"
            Expect.notEqual (texts va1) (texts va2) "different seed, different split"
            Expect.equal va1.Documents.Count 10 "10%"
            Expect.isEmpty (Set.intersect (set (texts tr1)) (set (texts va1))) "disjoint"
            Expect.equal (Set.union (set (texts tr1)) (set (texts va1))) (set (texts c)) "covering"
            let two = Corpus("two", [| Document("a", "s", 1); Document("b", "s", 2) |])
            let struct (t, v) = two.Split(0.01, 3)
            Expect.equal (t.Documents.Count, v.Documents.Count) (1, 1) "both parts non-empty"
            throwsWith<CorpusException> [ "one" ] (fun () -> Corpus("one", [| Document("a", "s", 1) |]).Split(0.1, 0) |> ignore)
        }
    ]

let blocks name (n: int) blockLength =
    // n tokens 0..n-1 packed with a fake stride: built directly, no tokenizer needed
    TokenBlocks(name, Array.init n id, blockLength, int64 n, 1, "test")

let packingTests =
    testList "Packing" [
        test "EOS after every document; Count and Block overlap by one token" {
            let docs = [| Document("ab", "s", 1); Document("c", "s", 2); Document("de", "s", 3) |]
            let b = Packing.Pack(docs, ByteTokenizer.Instance, 3)
            let e = ByteTokenizer.Eos
            Expect.equal b.Tokens [| 97; 98; e; 99; e; 100; 101; e |] "concatenation with eos"
            Expect.equal b.TotalTokens 8 "total"
            Expect.equal b.Bytes 5L "bytes"
            Expect.equal b.Count 2 "floor((8-1)/3)"
            Expect.equal (b.Block(0).ToArray()) [| 97; 98; e; 99 |] "block 0"
            Expect.equal (b.Block(1).ToArray()) [| 99; e; 100; 101 |] "block 1 starts with block 0's last token"
            Expect.throws (fun () -> b.Block(2).Length |> ignore) "out of range"
            Expect.equal (Packing.Pack(docs, ByteTokenizer.Instance, 7).Count) 1 "exactly one block with blockLength+1 tokens"
        }
        test "too little text for one block names the corpus and the block length" {
            let c = Corpus("tiny", [| Document("hi", "s", 1) |])
            throwsWith<CorpusException> [ "tiny"; "128" ] (fun () -> Packing.Pack(c, ByteTokenizer.Instance, 128) |> ignore)
        }
    ]

let sample (m: Mixture) i = let struct (s, b) = m.Sample i in (s, b)

let mixtureTests =
    testList "Mixture" [
        test "replay 0.1: exactly 100 of 1000 from general, within one of the share on every prefix" {
            let m = Mixture.Replay(blocks "domain" 1001 10, blocks "general" 501 10, 0.1, 7)
            let srcs = [| for i in 0L .. 999L -> fst (sample m i) |]
            Expect.equal (srcs |> Array.filter ((=) 1) |> Array.length) 100 "exactly 100 from general"
            let mutable count = 0
            for j in 0 .. 999 do
                if srcs.[j] = 1 then count <- count + 1
                Expect.isLessThanOrEqual (abs (float count - 0.1 * float (j + 1))) 1.0 (sprintf "prefix %d" (j + 1))
        }
        test "three sources with awkward fractions: every prefix within one item; fraction 0 never sampled" {
            let fr = [| 0.37; 0.5; 0.13; 0.0 |]
            let m = Mixture([| for k in 0 .. 3 -> MixtureSource(sprintf "s%d" k, blocks "b" 51 10, fr.[k]) |], 3)
            let counts = Array.zeroCreate 4
            for j in 0 .. 4999 do
                let s = fst (sample m (int64 j))
                counts.[s] <- counts.[s] + 1
                for k in 0 .. 3 do
                    Expect.isLessThanOrEqual (abs (float counts.[k] - fr.[k] * float (j + 1))) 1.0 (sprintf "source %d prefix %d" k (j + 1))
            Expect.equal counts.[3] 0 "fraction 0"
            Expect.equal m.Period 100 "exact period"
        }
        test "Sample is pure: same in two instances and independent of query order" {
            let mk () = Mixture.Replay(blocks "domain" 301 10, blocks "general" 101 10, 0.25, 11)
            let a, b = mk (), mk ()
            let idx = [| 0L .. 2999L |]
            let forward = idx |> Array.map (sample a)
            let rng = Rng(5L)
            let shuffled = Array.copy idx
            rng.Shuffle shuffled
            let backward = Array.zeroCreate idx.Length
            for i in shuffled do backward.[int i] <- sample b i
            Expect.equal backward forward "order-independent and instance-independent"
            Expect.equal (sample b 123456789L) (sample a 123456789L) "far index"
            let other = Mixture.Replay(blocks "domain" 301 10, blocks "general" 101 10, 0.25, 12)
            Expect.notEqual (idx |> Array.map (sample other)) forward "seed matters"
        }
        test "each source's blocks are all visited once per epoch, in a new order next epoch" {
            let dom = blocks "domain" 201 10 // 20 blocks
            let gen = blocks "general" 61 10 // 6 blocks
            let m = Mixture.Replay(dom, gen, 0.5, 9)
            let draws = [| for i in 0L .. 199L -> sample m i |]
            let ofSource s = draws |> Array.filter (fun (x, _) -> x = s) |> Array.map snd
            let d = ofSource 0
            Expect.equal (Array.sort d.[0..19]) [| 0 .. 19 |] "domain epoch 0 is a permutation"
            Expect.equal (Array.sort d.[20..39]) [| 0 .. 19 |] "domain epoch 1 is a permutation"
            Expect.notEqual d.[20..39] d.[0..19] "re-permuted each epoch"
            let g = ofSource 1
            for e in 0 .. 5 do
                Expect.equal (Array.sort g.[e * 6 .. e * 6 + 5]) [| 0 .. 5 |] (sprintf "general epoch %d" e)
            Expect.equal (m.BlockAt(5L).ToArray()) ((if fst draws.[5] = 0 then dom else gen).Block(snd draws.[5]).ToArray()) "BlockAt"
        }
        test "fractions with no small period fall back to a 65536-item period, still close on every prefix" {
            let f = 1.0 / Math.PI
            let m = Mixture([| MixtureSource("a", blocks "a" 31 10, f); MixtureSource("b", blocks "b" 31 10, 1.0 - f) |], 1)
            Expect.equal m.Period 65536 "fallback period"
            Expect.equal (m.Quota 0 + m.Quota 1) 65536L "quotas fill the period"
            let mutable count = 0
            for j in 0 .. 19999 do
                if fst (sample m (int64 j)) = 0 then count <- count + 1
                Expect.isLessThanOrEqual (abs (float count - f * float (j + 1))) 1.01 (sprintf "prefix %d" (j + 1))
        }
        test "SplitMix64 output is pinned (seeded orders must not change between versions)" {
            let r = Rng(0L)
            Expect.equal (r.NextUInt64()) 0xE220A8397B1DCDAFUL "first output for seed 0"
            Expect.equal (r.NextUInt64()) 0x6E789E6AA1B965F4UL "second output for seed 0"
        }
        test "fractions must be >= 0 and sum to 1" {
            let b = blocks "b" 21 10
            throwsWith<ArgumentException> [ "sum to 1" ] (fun () -> Mixture([| MixtureSource("a", b, 0.5); MixtureSource("c", b, 0.4) |], 0) |> ignore)
            throwsWith<ArgumentException> [ "\"c\""; "≥ 0" ] (fun () -> Mixture([| MixtureSource("a", b, 1.5); MixtureSource("c", b, -0.5) |], 0) |> ignore)
        }
    ]

[<Tests>]
let tests = testList "Data" [ tokenizerTests; corpusTests; packingTests; mixtureTests ]
