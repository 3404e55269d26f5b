/// The embedded default world: byte-identical files per seed, the entity split, and files the project's readers accept.
module Research.Tests.WorldTests

open System
open System.IO
open Expecto
open Research.Data
open Research.Data.Synthetic
open Research.Eval
open Research.Pipelines
open Research.Tests.TestUtil

/// Every file under a folder, by relative path, with its bytes.
let private files (dir: string) =
    Directory.GetFiles(dir, "*", SearchOption.AllDirectories)
    |> Array.map (fun f -> Path.GetRelativePath(dir, f), File.ReadAllBytes f)
    |> Array.sortBy fst
    |> List.ofArray

let private contains (path: string) (text: string) = File.ReadAllText(path).Contains(text: string)

[<Tests>]
let tests =
    testList "World" [
        testCase "same seed and size: byte-identical files; another seed: different files" <| fun _ ->
            let a = World(120, 3).Write(tempDir "world-a")
            let b = World(120, 3).Write(tempDir "world-b")
            let c = World(120, 4).Write(tempDir "world-c")
            let fa, fb, fc = files a.Directory, files b.Directory, files c.Directory
            Expect.equal (List.map fst fa) (List.map fst fb) "same file names"
            Expect.equal (List.length fa) 15 "fifteen files"
            for (name, bytes), (_, other) in List.zip fa fb do
                Expect.isTrue (bytes.Length > 0) $"{name} is not empty"
                Expect.isTrue (bytes = other) $"{name} is byte-identical for the same seed"
            for (name, bytes), (_, other) in List.zip fa fc do
                Expect.isFalse (bytes = other) $"{name} differs for another seed"

        testCase "size scales the world: size general documents, half as many domain documents, more companies" <| fun _ ->
            let small, large = World(60, 1), World(3000, 1)
            Expect.equal small.General.Count 60 "general documents"
            Expect.equal small.Domain.Count 30 "domain documents"
            Expect.equal small.ReadingComprehension.Count 30 "one RC variant per domain document"
            Expect.equal small.Entities.Companies.Count 9 "the minimum of 9 companies"
            Expect.equal large.Entities.Companies.Count 20 "3000 / 150 companies"
            Expect.equal (large.Entities.TestCompanies |> Seq.length) 6 "a third are test companies"
            throwsWith<ArgumentException> (fun () -> World(5, 1) |> ignore) [ "size"; "5" ] "too small"

        testCase "entity split: test companies' facts are in the documents, never in instructions, preferences or few-shot" <| fun _ ->
            let w = World(300, 9)
            let f = w.Write(tempDir "world-split")
            let test = w.Entities.TestCompanies |> List.ofSeq
            let train = w.Entities.TrainCompanies |> List.ofSeq
            Expect.isNonEmpty test "some test companies"
            for c in test do
                Expect.isTrue (contains f.Domain (WorldDocuments.SectorFact c)) $"{c.Name}: sector fact in the domain documents"
                Expect.isTrue (contains f.Domain (WorldDocuments.ChiefFact c)) $"{c.Name}: chief fact in the domain documents"
                for path in [ f.Instructions; f.Preferences; f.Unpaired; f.DomainKnowledgeFewShot ] do
                    Expect.isFalse (contains path c.Name) $"{c.Name} absent from {Path.GetFileName path}"
                    Expect.isFalse (contains path c.Chief) $"{c.Chief} (chief of a test company) absent from {Path.GetFileName path}"
                Expect.isTrue (contains f.DomainKnowledge c.Name) $"{c.Name} is asked about"
            for c in train do
                Expect.isTrue (contains f.Instructions c.Name) $"{c.Name} (train) in instructions"
                Expect.isFalse (contains f.DomainKnowledge c.Name) $"{c.Name} (train) not asked about"
            let entities = Text.Json.Nodes.JsonNode.Parse(File.ReadAllText f.Entities)
            Expect.equal (entities["test"].AsArray().Count) test.Length "entities.json lists the test companies"

        testCase "the files read back with the project's readers (HF conventions)" <| fun _ ->
            let w = World(120, 2)
            let f = w.Write(tempDir "world-read")
            Expect.equal (Corpus.Load(f.General).Documents.Count) 120 "general: text JSONL"
            Expect.equal (Corpus.Load(f.Domain).Documents |> Seq.map (fun d -> d.Text) |> List.ofSeq) (w.Domain |> Seq.map (fun d -> d.Text) |> List.ofSeq) "domain texts round-trip"
            Expect.stringContains (Corpus.Load(f.ReadingComprehension).Documents[0].Text) "\n\nQuestion: What is the sector of" "a document followed by questions"
            Expect.isGreaterThan (Corpus.Load(f.Tapt).Documents.Count) 9 "TAPT text"
            let sft = SftData.Read f.Instructions
            Expect.equal sft.Count w.Instructions.Count "instructions: messages JSONL"
            Expect.isTrue (sft |> Seq.forall (fun e -> e.IsConversation)) "conversational"
            let fitted = SftPreparation.Prepare(sft, ChatTemplates.Plain, ByteTokenizer.Instance, 129, SftTruncation.KeepCompletion)
            Expect.equal fitted.Dropped 0 "every instruction fits 128 positions of a byte model with the plain template, its answer whole"
            Expect.isLessThan fitted.Truncated (sft.Count / 4) "few prompts are cut at 128 positions"
            let pairs = PreferenceData.Read f.Preferences
            Expect.isTrue pairs.Paired "prompt/chosen/rejected"
            Expect.isTrue (pairs.Records |> Seq.forall (fun r -> r.Chosen <> r.Rejected)) "chosen differs from rejected"
            let kinds = w.Preferences |> Seq.map (fun p -> p.Kind) |> Set.ofSeq
            Expect.equal kinds (set [ "wrong"; "verbose"; "off_format" ]) "three kinds of rejected answers"
            let unpaired = PreferenceData.Read f.Unpaired
            Expect.isFalse unpaired.Paired "prompt/completion/label"
            Expect.equal (unpaired.Records |> Seq.filter (fun r -> r.Label = 1.0) |> Seq.length) pairs.Records.Count "one desirable per pair"
            for path in [ f.DomainKnowledge; f.DomainKnowledgeFewShot; f.DomainTask; f.GeneralKnowledge ] do
                let items = McData.Read path
                Expect.isNonEmpty items path
                for it in items do
                    Expect.equal (it.Choices |> Seq.distinct |> Seq.length) it.Choices.Count $"{it.Where}: distinct choices"
            Expect.equal (SftData.Read f.Reasoning).Count w.Reasoning.Count "reasoning: messages JSONL"
            let fmt = World.ReadFormatItems f.InstructionFollowing
            Expect.equal (fmt |> Seq.map (fun i -> i.Constraint) |> Set.ofSeq) (set FormatRules.All) "every constraint is asked"
            Expect.isTrue (PreferenceData.Read f.HeldOutPreferences).Paired "held-out pairs"

        testCase "reasoning answers are the difference of the two reported figures" <| fun _ ->
            let c = Company("Tarn Group", "TAR", "mining", "Belo", "Ka Mon", [| 40; 75; 60; 60 |], false)
            let r0, r1, r2 = WorldTasks.Reasoning(c, 0), WorldTasks.Reasoning(c, 1), WorldTasks.Reasoning(c, 2)
            Expect.equal r0.Answer "35" "75 - 40"
            Expect.stringContains r0.Prompt "How much higher was Q2?" "rising"
            Expect.equal r1.Answer "15" "75 - 60"
            Expect.stringContains r1.Prompt "How much higher was Q2?" "falling: the higher quarter is asked about"
            Expect.equal r2.Answer "0" "flat"

        testCase "instruction-following files written by hand: errors name file and line" <| fun _ ->
            let dir = tempDir "world-fmt"
            let p = Path.Combine(dir, "fmt.jsonl")
            File.WriteAllLines(p, [ """{"prompt": "Say hi in uppercase.", "constraint": "uppercase"}"""; ""; """{"prompt": "x", "constraint": "json"}""" ])
            throwsWith<CorpusException> (fun () -> World.ReadFormatItems p |> ignore) [ "fmt.jsonl:3"; "key" ] "json without key"
            File.WriteAllLines(p, [ """{"prompt": "x", "constraint": "haiku"}""" ])
            throwsWith<CorpusException> (fun () -> World.ReadFormatItems p |> ignore) [ "fmt.jsonl:1"; "haiku" ] "unknown constraint"

        testCase "bring your own data: a folder of text files is a corpus; a JSONL MC file is a suite" <| fun _ ->
            let dir = tempDir "world-byo"
            let texts = Path.Combine(dir, "texts")
            Directory.CreateDirectory texts |> ignore
            File.WriteAllText(Path.Combine(texts, "a.txt"), "The first document.")
            File.WriteAllText(Path.Combine(texts, "b.txt"), "The second document.")
            Expect.equal (DataSource.FromPath(texts).Corpus.Documents.Count) 2 "two documents from a folder"
            let mc = Path.Combine(dir, "bench.jsonl")
            File.WriteAllLines(mc, [ """{"question": "2 + 2 =", "choices": ["3", "4"], "answer": 1}""" ])
            let suite = McSuite("bench", mc)
            Expect.equal suite.Name "bench" "named"
            Expect.stringContains suite.Fingerprint (McData.ContentHash mc) "keyed by the file's content"
    ]
