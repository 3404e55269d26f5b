module Research.Tests.McEvalTests

open System.IO
open Expecto
open TorchSharp
open Research.Data
open Research.Eval
open Research.Pipelines
open Research.Stages
open Research.Training
open Research.Tests.TestUtil

let private tok = ByteTokenizer.Instance :> ITokenizer

let private item q (choices: string list) answer line = McItem(q, choices, answer, "mem", line)

/// log P(continuation | context) by hand: one forward pass over the whole row, log-softmax, a loop over positions.
let private directLL (m: Research.Models.CausalLM) (context: string) (continuation: string) =
    let struct (ctx, cont) = McScoring.EncodePair(tok, context, continuation)
    let all = Array.append ctx cont
    let maxLen = m.Config.MaxPositionEmbeddings
    let all = if all.Length > maxLen + 1 then all[all.Length - (maxLen + 1) ..] else all
    let input = all[.. all.Length - 2] |> Array.map int64
    m.eval()
    use _ = torch.no_grad()
    use logits = m.Forward(torch.tensor(input, dtype = torch.int64).unsqueeze(0L))
    use lp = logits[0L].``to``(torch.float64).log_softmax(-1L)
    let mutable s = 0.0
    for j in all.Length - cont.Length .. all.Length - 1 do
        s <- s + lp[int64 (j - 1), int64 all[j]].item<float>()
    s

let private items () =
    [ item "capital of Aq?" [ "Bo"; "Cu"; "Dy" ] 0 1
      item "capital of Ek?" [ "Fa"; "Gi"; "Hollowmere" ] 2 2
      item "what is 2+2, written as a long word with many letters?" [ "four"; "five hundred and three"; "x" ] 0 3
      item "colour of grass?" [ "green"; "blue" ] 0 4
      item "capital of Ir?" [ "Jo"; "Ku"; "Lm"; "Mn" ] 1 5
      item (String.replicate 12 "a long question that overflows the context ") [ "yes"; "no"; "maybe so" ] 2 6
      item "opposite of up?" [ "down"; "sideways"; "" + "left" ] 0 7 ]

let private write (name: string) (lines: string list) =
    let p = Path.Combine(tempDir "mc", name)
    File.WriteAllLines(p, lines)
    p

[<Tests>]
let tests =
    testList "McEval" [
        testCase "LL of a continuation equals the sum of the model's log-softmax over its tokens (and truncates the context from the left)" <| fun _ ->
            use m = microModel 31L
            let cases =
                [ "Question: capital of Aq?\nAnswer:", " Bo"
                  "Question: colour of grass?\nAnswer: ", "green"                   // trailing space moves to the continuation
                  String.replicate 5 "a context far longer than the model's 64 positions ", " yes it is" ]
            let got = McScoring.LogLikelihoods(m, tok, cases |> List.map (fun (c, x) -> struct (c, x)) |> ResizeArray, 2)
            for (c, x), g in List.zip cases (List.ofArray got) do
                let want = directLL m c x
                Expect.floatClose { absolute = 1e-4; relative = 1e-6 } g want $"LL of {x}"
                Expect.isLessThan g 0.0 "a log-probability"

        testCase "acc picks the highest LL, acc_norm the highest LL per character" <| fun _ ->
            let struct (a, n) = McScoring.Pick([| -8.0; -6.0 |], [| 4; 20 |])
            Expect.equal (a, n) (1, 1) "long choice wins both when its per-char LL is also higher"
            // total favours choice 0, per character favours choice 1
            let struct (acc, accNorm) = McScoring.Pick([| -4.0; -6.0 |], [| 2; 10 |])
            Expect.equal acc 0 "acc: argmax LL (-4)"
            Expect.equal accNorm 1 "acc_norm: argmax LL/len (-0.6 > -2)"
            let struct (t1, t2) = McScoring.Pick([| -1.0; -1.0 |], [| 3; 3 |])
            Expect.equal (t1, t2) (0, 0) "ties go to the first choice"

        testCase "scores are identical at batch sizes 1, 3 and 8" <| fun _ ->
            use m = microModel 32L
            let its = items ()
            let run b = McScoring.Evaluate(m, tok, its, McOptions(FewShot = 1, Seed = 3L, BatchSize = b))
            let r1, r3, r8 = run 1, run 3, run 8
            for r in [ r3; r8 ] do
                Expect.equal r.Acc r1.Acc "acc"
                Expect.equal r.AccNorm r1.AccNorm "acc_norm"
                for p, q in Seq.zip r.Predictions r1.Predictions do
                    Expect.equal (p.Predicted, p.PredictedNorm) (q.Predicted, q.PredictedNorm) $"decisions of {p.Item.Where}"
                    Expect.equal p.Context q.Context "same prompt"
                    for a, b in Seq.zip p.LogLikelihoods q.LogLikelihoods do
                        Expect.floatClose { absolute = 1e-4; relative = 0.0 } a b $"LL of {p.Item.Where}"
            Expect.equal r1.Count its.Length "count"
            let metrics = r1.ToMetrics()
            Expect.equal (Set.ofSeq metrics.Keys) (Set.ofList [ "acc"; "acc_norm"; "acc_norm_stderr"; "acc_stderr"; "count" ]) "metric names"
            // The harness's standard error of a mean of 0/1 scores: sqrt(acc (1 - acc) / (n - 1)).
            let n = float r1.Count
            Expect.floatClose Accuracy.veryHigh metrics["acc_stderr"] (sqrt (r1.Acc * (1.0 - r1.Acc) / (n - 1.0))) "acc_stderr"
            Expect.floatClose Accuracy.veryHigh metrics["acc_norm_stderr"] (sqrt (r1.AccNorm * (1.0 - r1.AccNorm) / (n - 1.0))) "acc_norm_stderr"

        testCase "few-shot examples: seeded, differ by seed, never the item itself" <| fun _ ->
            let pool = items () |> ResizeArray
            let it = pool[2]
            let a = McPrompt.FewShot(it, 2, pool, 3, 11L)
            let b = McPrompt.FewShot(it, 2, pool, 3, 11L)
            Expect.sequenceEqual a b "same seed, same examples"
            let differs = [ 12L .. 20L ] |> List.exists (fun s -> not (Seq.forall2 (=) (McPrompt.FewShot(it, 2, pool, 3, s)) a))
            Expect.isTrue differs "another seed draws other examples"
            for s in 0L .. 40L do
                for i in 0 .. pool.Count - 1 do
                    let shots = McPrompt.FewShot(pool[i], i, pool, pool.Count - 1, s)
                    Expect.equal shots.Count (pool.Count - 1) "k examples"
                    Expect.isFalse (shots |> Seq.exists (fun e -> e.SameContent pool[i])) "never the item itself"
                    Expect.equal (shots |> Seq.distinct |> Seq.length) shots.Count "without replacement"
            Expect.throws (fun () -> McPrompt.FewShot(it, 2, pool, pool.Count, 1L) |> ignore) "k larger than the other examples"
            let ctx = McPrompt.Context(it, a)
            Expect.isTrue (ctx.EndsWith("\n\nQuestion: " + it.Question + "\nAnswer:")) $"item after the shots: {ctx}"
            Expect.isTrue (ctx.StartsWith("Question: " + a[0].Question + "\nAnswer: " + a[0].Choices[a[0].Answer] + "\n\n")) "shot with its gold answer"

        testCase "JSONL: answer as index or string; errors name file:line" <| fun _ ->
            let ok =
                write "ok.jsonl"
                    [ """{"question": "q1", "choices": ["a", "b"], "answer": 1}"""
                      ""
                      """{"question": "q2", "choices": ["x", "y", "z"], "answer": "z", "id": 7}""" ]
            let its = McData.Read ok
            Expect.equal its.Count 2 "two items"
            Expect.equal its[0].Answer 1 "index"
            Expect.equal its[1].Answer 2 "string answer resolved to its index"
            Expect.equal its[1].Line 3 "line numbers count blank lines"
            let bad name (line2: string) fragments =
                let p = write name [ """{"question": "q", "choices": ["a", "b"], "answer": 0}"""; line2 ]
                throwsWith<CorpusException> (fun () -> McData.Read p |> ignore) ($"{p}:2" :: fragments) name
            bad "malformed.jsonl" """{"question": "q", "choices": [""" [ "malformed" ]
            bad "missing.jsonl" """{"question": "q", "answer": 0}""" [ "missing"; "choices" ]
            bad "range.jsonl" """{"question": "q", "choices": ["a", "b"], "answer": 2}""" [ "out of range" ]
            bad "negative.jsonl" """{"question": "q", "choices": ["a", "b"], "answer": -1}""" [ "out of range" ]
            bad "few.jsonl" """{"question": "q", "choices": ["a"], "answer": 0}""" [ "fewer than 2 choices" ]
            bad "notchoice.jsonl" """{"question": "q", "choices": ["a", "b"], "answer": "c"}""" [ "not one of the choices" ]

        testCase "McSuite: fingerprint covers content, k and seed; metrics acc/acc_norm/count" <| fun _ ->
            let p = write "s.jsonl" [ """{"question": "q1", "choices": ["a", "b"], "answer": 1}"""; """{"question": "q2", "choices": ["c", "d"], "answer": 0}""" ]
            let s = McSuite("mc", p, 1, null, 5L)
            Expect.equal (McSuite("mc", p, 1, null, 5L, 2)).Fingerprint s.Fingerprint "batch size is not in the key"
            Expect.notEqual (McSuite("mc", p, 0, null, 5L)).Fingerprint s.Fingerprint "k"
            Expect.notEqual (McSuite("mc", p, 1, null, 6L)).Fingerprint s.Fingerprint "seed"
            let before = s.Fingerprint
            File.AppendAllLines(p, [ """{"question": "q3", "choices": ["e", "f"], "answer": 0}""" ])
            Expect.notEqual (McSuite("mc", p, 1, null, 5L)).Fingerprint before "content"
            use m = microModel 33L
            let r = (s :> ISuite).Evaluate(m, tok)
            Expect.equal r["count"] 3.0 "count"
            Expect.isTrue (r["acc"] >= 0.0 && r["acc"] <= 1.0) "acc in [0, 1]"

        testCase "a micro model trained on the facts scores above chance" <| fun _ ->
            let facts = [ "Aq", "Bo"; "Ek", "Fu"; "Ir", "Jy"; "Om", "Pa" ]
            let rng = Rng(9L)
            let docs =
                [| for r in 0 .. 59 do
                     for (c, k) in facts -> $"Question: capital of {c}?\nAnswer: {k}" |]
            rng.Shuffle docs
            let docs = docs |> Array.mapi (fun i t -> Document(t, "facts", i + 1))
            let blocks = Packing.Pack(docs, tok, 48)
            // 200 steps at lr 1e-2 learn the four facts (acc 1.0 at model seeds 34 and 35); fewer steps or a lower lr stay at chance
            let cfg = TrainConfig(Steps = 200, BatchSize = 8, LearningRate = 1e-2, WarmupSteps = 4, LogEvery = 50, EvalEvery = 0, CheckpointEvery = 0, Seed = 4L)
            use m = microModel 34L
            Trainer.Run(m, tok, Adapt.Pretrain(blocks, cfg, "facts"), cfg, tempDir "mc-train", null, TextWriter.Null) |> ignore
            let caps = facts |> List.map snd
            let its = facts |> List.mapi (fun i (c, k) -> item $"capital of {c}?" caps (List.findIndex ((=) k) caps) (i + 1))
            let r = McScoring.Evaluate(m, tok, its)
            Expect.isGreaterThanOrEqual r.Acc 0.75 $"acc {r.Acc} (chance 0.25)"
    ]
