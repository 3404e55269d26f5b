module Research.Tests.TuneTests

open System
open System.Collections.Generic
open System.IO
open System.Text.Json.Nodes
open Expecto
open TorchSharp
open Research.Data
open Research.Models
open Research.Stages
open Research.Training
open Research.Tests.TestUtil

let private tok = ByteTokenizer.Instance

let private writeJsonl (name: string) (lines: string list) =
    let path = Path.Combine(tempDir "tune", name)
    File.WriteAllLines(path, lines)
    path

let private seqOf (ids: int list) (trained: bool list) = SftTokens(List.toArray ids, List.toArray trained)

let private rows (xs: SftTokens list list) : IReadOnlyList<IReadOnlyList<SftTokens>> =
    xs |> List.map (fun r -> List.toArray r :> IReadOnlyList<SftTokens>) |> List.toArray :> _

/// A sequence of n random byte ids (BOS first) whose last half is trained.
let private randomSeq (rng: Rng) n =
    let ids = [ ByteTokenizer.Bos ] @ [ for _ in 1 .. n - 1 -> rng.NextInt 256 ]
    seqOf ids [ for i in 0 .. n - 1 -> i >= n / 2 ]

let private options (packing: bool) (alpha: float) =
    TuneOptions(BlockLength = 24, Packing = packing, NeftuneAlpha = alpha, Train = TrainConfig(Seed = 3L))

let private sequences =
    lazy (let rng = Rng(11L) in [ for n in [ 9; 14; 5; 20; 7; 11; 3; 16 ] -> randomSeq rng n ])

let private gradients (objective: TuneObjective) (batch: int) (accumulation: int) =
    use m = microModel 21L
    let cfg = TrainConfig(BatchSize = batch, Accumulation = accumulation)
    let batches = [ for micro in 0 .. accumulation - 1 -> objective.Batch(0L, micro, cfg, torch.CPU) ]
    let normalizer = batches |> List.sumBy (fun b -> b.Normalizer)
    use sink = new MetricSink()
    for b in batches do
        use loss = objective.Loss(m, b, sink) / float normalizer
        loss.backward()
        b.Dispose()
    [ for struct (n, p) in m.named_parameters() -> n, p.grad.clone() ]

let private companies = [ "acme", "ACM"; "globex", "GLX"; "initech", "INT"; "umbrella", "UMB" ]
let private phrasings =
    [ "Q: ticker of %s?\nA: "; "Q: %s ticker?\nA: "; "Q: symbol of %s?\nA: "; "Q: %s trades as?\nA: "
      "Q: what is %s?\nA: "; "Q: %s symbol?\nA: "; "Q: %s on the exchange?\nA: "; "Q: quote %s?\nA: " ]

let private tickerLines () =
    [ for p in phrasings do
        for (name, ticker) in companies ->
            let o = JsonObject()
            o["prompt"] <- JsonValue.Create(p.Replace("%s", name))
            o["completion"] <- JsonValue.Create(ticker)
            o.ToJsonString() ]

[<Tests>]
let tests =
    testList "Tune" [
        testCase "reads prompt/completion, messages and conversational prompts" <| fun _ ->
            let path =
                writeJsonl "mixed.jsonl"
                    [ """{"prompt": "2+2=", "completion": "4"}"""
                      ""
                      """{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"""
                      """{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], "completion": "d"}""" ]
            let xs = SftData.Read path
            Expect.equal xs.Count 3 "blank lines skipped"
            Expect.equal (xs[0].Prompt, xs[0].Completion, xs[0].IsConversation) ("2+2=", "4", false) "plain pair"
            Expect.equal xs[1].Line 3 "line numbers count blank lines"
            Expect.equal [ for m in xs[1].Messages -> m.Role, m.Trained ] [ ChatRole.System, false; ChatRole.User, false; ChatRole.Assistant, true ] "assistant turns trained"
            Expect.equal [ for m in xs[2].Messages -> m.Role, m.Content, m.Trained ]
                [ ChatRole.User, "a", false; ChatRole.Assistant, "b", false; ChatRole.User, "c", false; ChatRole.Assistant, "d", true ]
                "prompt messages are context, even assistant ones; the completion is trained"

        testCase "malformed data is an error naming file and line" <| fun _ ->
            let bad (lines: string list) (fragments: string list) =
                let path = writeJsonl "bad.jsonl" lines
                throwsWith<CorpusException> (fun () -> SftData.Read path |> ignore) (path :: fragments) (String.Join(" | ", fragments))
            let ok = """{"prompt": "p", "completion": "c"}"""
            bad [ ok; """{"prompt": "p"}""" ] [ ":2:"; "missing field \"completion\"" ]
            bad [ ok; ok; """{"text": "p"}""" ] [ ":3:"; "missing field" ]
            bad [ """{"messages": [{"role": "bot", "content": "x"}]}""" ] [ ":1:"; "unknown role \"bot\""; "system, user or assistant" ]
            bad [ ok; """{"prompt": "p", "completion": """ ] [ ":2:"; "malformed JSON" ]
            bad [ """{"prompt": 3, "completion": "c"}""" ] [ ":1:"; "\"prompt\" must be a string or a list of messages, got a number" ]
            bad [ """{"messages": [{"role": "user", "content": ["x"]}]}""" ] [ ":1:"; "\"content\" must be a string, got a list" ]
            bad [ """{"messages": [{"role": "user"}]}""" ] [ ":1:"; "missing field \"content\"" ]
            bad [ """["prompt"]""" ] [ ":1:"; "expected a JSON object" ]
            bad [ ""; "  " ] [ "no examples" ]

        testCase "templates train exactly the assistant tokens and the EOS ending each turn" <| fun _ ->
            let ex = SftExample("x", 1, null, null, [| ChatMessage(ChatRole.User, "hi", false); ChatMessage(ChatRole.Assistant, "yo", true) |])
            let r = ChatTemplates.Plain.Render(ex, tok)
            // <BOS> "<|user|>\n" (1..9) "hi" (10, 11) "\n" (12) "<|assistant|>\n" (13..26) "yo" (27, 28) <EOS> (29)
            Expect.equal r.Length 30 "length"
            Expect.equal [ for i in 0 .. r.Length - 1 do if r.Trained[i] then i ] [ 27; 28; 29 ] "trained positions"
            Expect.equal r.Ids[0] ByteTokenizer.Bos "BOS first"
            Expect.equal r.Ids[29] ByteTokenizer.Eos "EOS ends the assistant turn"
            Expect.equal (tok.Decode r.Ids) "<|user|>\nhi\n<|assistant|>\nyo" "text"
            let c = ChatTemplates.ChatML.Render(ex, tok)
            let trained = [ for i in 0 .. c.Length - 1 do if c.Trained[i] then c.Ids[i] ]
            Expect.equal (tok.Decode trained) "yo<|im_end|>" "ChatML trains the answer and <|im_end|>"
            Expect.equal (List.last trained) ByteTokenizer.Eos "... and the EOS after it"
            Expect.equal (tok.Decode c.Ids) "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n" "ChatML text"
            let plain = ChatTemplates.Plain.Render(SftExample("x", 1, "Q", "AB", null), tok)
            Expect.equal (List.ofArray plain.Trained) [ false; false; true; true; true ] "prompt/completion: BOS Q | A B EOS"
            let struct (prompt, answer) = ChatTemplates.Plain.PromptAndAnswer(ex, tok)
            Expect.equal (tok.Decode prompt, answer) ("<|user|>\nhi\n<|assistant|>\n", "yo") "generation prompt ends with the assistant header"

        testCase "prompt tokens are not targets and get zero gradient" <| fun _ ->
            let s = seqOf [ 256; 10; 11; 12; 13; 14; 257 ] [ false; false; false; false; true; true; true ]
            use b = SftBatch.Collate(rows [ [ s ] ], false, 0L, 0, torch.CPU)
            Expect.equal (b.Target.data<int64>().ToArray()) [| -100L; -100L; -100L; 13L; 14L; 257L |] "targets"
            Expect.equal b.Normalizer 3L "normalizer = trained targets"
            use m = microModel 4L
            use logits = m.Forward(b.Input).detach().requires_grad_(true)
            use loss = TokenLoss.SummedCrossEntropy(logits, b.Target)
            loss.backward()
            use rowNorms = logits.grad.abs().sum(-1L).squeeze(0L)
            let norms = rowNorms.data<float32>().ToArray()
            Expect.equal (norms[0..2] |> Array.forall (fun x -> x = 0.0f)) true "prompt positions: zero gradient"
            Expect.equal (norms[3..] |> Array.forall (fun x -> x > 0.0f)) true "trained positions: gradient"

        testCase "a packed sample's logits equal its logits alone" <| fun _ ->
            let rng = Rng(5L)
            let parts = [ randomSeq rng 9; randomSeq rng 6; randomSeq rng 12 ]
            use m = microModel 8L
            m.eval()
            use noGrad = torch.no_grad()
            use b = SftBatch.Collate(rows [ parts ], true, 0L, 0, torch.CPU)
            Expect.equal (b.Positions.data<int64>().ToArray()[7..8]) [| 7L; 0L |] "positions restart at each sample"
            use packed = Tune.Logits(m, b, 0.0, 0L)
            let mutable offset = 0L
            for s in parts do
                let n = int64 s.Length - 1L
                use alone = m.Forward(ids [ for i in 0 .. int n - 1 -> int64 s.Ids[i] ])
                use slice = packed.narrow(1L, offset, n)
                Expect.isLessThan (maxAbsDiff slice alone) 1e-5 $"sample at {offset}"
                offset <- offset + n

        testCase "best-fit decreasing on a hand example" <| fun _ ->
            let bins = SftPreparation.BestFitDecreasing([| 6; 5; 4; 3; 2 |], 10)
            Expect.equal (bins |> Array.map List.ofArray |> List.ofArray) [ [ 0; 2 ]; [ 1; 3; 4 ] ] "6+4, 5+3+2"
            let obj = TuneObjective(sequences.Value, options true 0.0, "t")
            Expect.equal (obj.Rows |> Seq.collect id |> Seq.sort |> List.ofSeq) [ 0 .. 7 ] "every sequence in exactly one row"
            for r in obj.Rows do
                Expect.isLessThanOrEqual (r |> Array.sumBy (fun i -> sequences.Value[i].Length - 1)) 24 "row fits"

        testCase "truncation keeps the completion, counts truncated and dropped" <| fun _ ->
            let ex p c = SftExample("d.jsonl", 1, p, c, null)
            let xs = [| ex "ab" "cd"; ex "long prompt" "cd"; ex "p" "too long completion" |]
            let r = SftPreparation.Prepare(xs, ChatTemplates.Plain, tok, 8, SftTruncation.KeepCompletion)
            Expect.equal (r.Read, r.Truncated, r.Dropped, r.Sequences.Count) (3, 1, 1, 2) "counts"
            let cut = r.Sequences[1]
            Expect.equal (tok.Decode cut.Ids, cut.Length, cut.Ids[0]) ("omptcd", 8, ByteTokenizer.Bos) "prompt cut from the left after BOS"
            Expect.equal cut.TrainedTargets 3 "c, d and EOS kept"
            let s = SftPreparation.Prepare(xs, ChatTemplates.Plain, tok, 8, SftTruncation.KeepStart)
            Expect.equal (s.Truncated, s.Dropped) (1, 1) "keep_start cuts the end; a cut that leaves no trained token drops"
            Expect.equal (tok.Decode s.Sequences[1].Ids) "ptoo lo" "start kept"
            let d = SftPreparation.Prepare(xs, ChatTemplates.Plain, tok, 8, SftTruncation.Drop)
            Expect.equal (d.Truncated, d.Dropped) (0, 2) "drop"

        testCase "an all-masked example is an error naming file and line" <| fun _ ->
            let path =
                writeJsonl "masked.jsonl"
                    [ """{"prompt": "p", "completion": "c"}"""
                      """{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "no answer"}]}""" ]
            let xs = SftData.Read path
            throwsWith<CorpusException> (fun () -> SftPreparation.Prepare(xs, ChatTemplates.Plain, tok, 64, SftTruncation.KeepCompletion) |> ignore)
                [ $"{path}:2:"; "every token of this example is masked" ] "all masked"

        testCase "NEFTune noise only while training, the same noise for the same step" <| fun _ ->
            use m = microModel 6L
            use sink = new MetricSink()
            let cfg = TrainConfig(BatchSize = 2)
            let loss (o: TuneObjective) step =
                use b = o.Batch(step, 0, cfg, torch.CPU)
                use l = o.Loss(m, b, sink)
                l.item<float32>()
            let noisy = TuneObjective(sequences.Value, options true 5.0, "t")
            let clean = TuneObjective(sequences.Value, options true 0.0, "t")
            m.train()
            Expect.equal (loss noisy 0L) (loss noisy 0L) "reproducible"
            Expect.notEqual (loss noisy 0L) (loss clean 0L) "noise while training"
            m.eval()
            Expect.equal (loss noisy 0L) (loss clean 0L) "no noise in eval"

        testCase "gradients do not change with accumulation (2x2 = 1x4), packed or not" <| fun _ ->
            for packing in [ true; false ] do
                let o = TuneObjective(sequences.Value, options packing 0.0, "t")
                let a = gradients o 2 2
                let b = gradients o 4 1
                for (n, ga), (_, gb) in List.zip a b do
                    Expect.isLessThan (maxAbsDiff ga gb) 1e-6 $"{n} (packing {packing})"

        testCase "batches are a pure function of (seed, step, micro)" <| fun _ ->
            let o = TuneObjective(sequences.Value, options true 0.0, "t")
            let cfg = TrainConfig(BatchSize = 3)
            let get step = (use b = o.Batch(step, 0, cfg, torch.CPU) in b.Input.data<int64>().ToArray())
            let later = get 7L
            Expect.equal (get 2L) (TuneObjective(sequences.Value, options true 0.0, "t").Batch(2L, 0, cfg, torch.CPU).Input.data<int64>().ToArray()) "same batch from a fresh objective"
            Expect.equal (get 7L) later "same batch again after others"

        testCase "the data's content hash is part of the objective's identity; options are checked" <| fun _ ->
            let path = writeJsonl "d.jsonl" [ """{"prompt": "p", "completion": "c"}""" ]
            let before = SftData.FileFingerprint path
            Expect.stringContains (TuneObjective(sequences.Value, options true 0.0, before).Fingerprint) before "hash in fingerprint"
            File.AppendAllLines(path, [ """{"prompt": "q", "completion": "d"}""" ])
            Expect.notEqual (SftData.FileFingerprint path) before "an edited file has another hash"
            Expect.stringContains (System.Text.Json.JsonSerializer.Serialize(TuneOptions())) "\"Truncation\":\"KeepCompletion\"" "truncation policy by name in JSON"
            throwsWith<ArgumentException> (fun () -> TuneOptions(NeftuneAlpha = -1.0).Validate() |> ignore) [ "neftune_alpha" ] "negative alpha"
            let parent = tempDir "tune-parent"
            (use m = microModel 1L in Checkpoint.Save(parent, m, tok))
            let ctx = StageContext("t", tempDir "tune-run", [| parent |], [||], 1L, torch.CPU, TextWriter.Null)
            throwsWith<ArgumentException> (fun () -> TuneExecutor().Execute(ctx, TuneOptions()) |> ignore) [ "stage 't'"; "data_path" ] "no data"
            throwsWith<ArgumentException> (fun () -> TuneExecutor().Execute(ctx, TuneOptions(DataPath = path, BlockLength = 100)) |> ignore)
                [ "block_length 100"; "max_position_embeddings 64" ] "too long for the model"

        testCase "tuning a micro model lowers held-out loss and answers more held-out prompts" <| fun _ ->
            let dir = tempDir "tune-e2e"
            let data = Path.Combine(dir, "tickers.jsonl")
            File.WriteAllLines(data, tickerLines ())
            let parent = Path.Combine(dir, "parent")
            (use m = microModel 9L in Checkpoint.Save(parent, m, tok))
            let o =
                TuneOptions(DataPath = data, BlockLength = 64, ValidationFraction = 0.25,
                            Train = TrainConfig(Steps = 40, BatchSize = 16, LearningRate = 1e-2, WarmupSteps = 4, WeightDecay = 0.0, LogEvery = 10, EvalEvery = 20, CheckpointEvery = 0))
            let seed = 17L
            let struct (_, heldOut) = SftData.Split(SftData.Read data, o.ValidationFraction, seed)
            let valSeqs = SftPreparation.Prepare(heldOut, ChatTemplates.Plain, tok, 65, SftTruncation.KeepCompletion).Sequences
            let score (dir: string) =
                let struct (m, t) = Checkpoint.Load dir
                use m = m
                (Tune.Validate(m, valSeqs, 8)["val_loss"], (let struct (hit, _) = Tune.ExactMatch(m, t, ChatTemplates.Plain, heldOut, 6) in hit))
            let lossBefore, matchBefore = score parent
            let ctx = StageContext("tune", Path.Combine(dir, "run"), [| parent |], [||], seed, torch.CPU, TextWriter.Null)
            let metrics = TuneExecutor().Execute(ctx, o)
            let lossAfter, matchAfter = score ctx.FinalCheckpoint
            printfn $"tune e2e: val_loss {lossBefore:F3} -> {lossAfter:F3}, exact match {matchBefore} -> {matchAfter} of {heldOut.Count}"
            Expect.floatClose Accuracy.medium metrics["val_loss"] lossAfter "the stage's validation is the held-out masked loss"
            Expect.isLessThan lossAfter (lossBefore * 0.5) "held-out loss falls"
            Expect.isGreaterThan matchAfter matchBefore "more exact answers after tuning"
            let report = JsonNode.Parse(File.ReadAllText(Path.Combine(ctx.Directory, TuneExecutor.ReportFile)))
            Expect.equal (report["examples_read"].GetValue<int>()) 32 "examples read"
            Expect.equal (report["validation_examples"].GetValue<int>()) heldOut.Count "held out"
            Expect.equal (report["dropped"].GetValue<int>()) 0 "none dropped"
            Expect.isGreaterThan (report["packing_efficiency"].GetValue<float>()) 0.5 "packed"
    ]
