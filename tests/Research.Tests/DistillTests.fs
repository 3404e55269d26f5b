/// Distillation losses against divergences computed here with System.Math on fixed small logits.
module Research.Tests.DistillTests

open System
open Expecto
open TorchSharp
open Research.Stages
open Research.Tests.TestUtil

// Student and teacher logits (B=1, T=3, V=4); target -100 at t=1 (its logits are poisoned below where it matters).
let private student = [| [| 0.5; -1.0; 2.0; 0.0 |]; [| 1.0; 1.0; 1.0; 1.0 |]; [| -2.0; 0.3; 0.7; 3.0 |] |]
let private teacher = [| [| 1.5; 0.0; 1.0; -1.0 |]; [| 0.0; 2.0; -2.0; 0.5 |]; [| 0.0; 0.0; 2.5; 1.0 |] |]
let private targets = [| 2L; -100L; 3L |]

let private logits (rows: float[][]) = torch.tensor(Array.collect id rows, dtype = torch.float32).view(1L, int64 rows.Length, int64 rows[0].Length)
let private tgt (xs: int64[]) = torch.tensor(xs, dtype = torch.int64).view(1L, int64 xs.Length)
let private scalar (t: torch.Tensor) = t.detach().``to``(torch.float64).item<float>()
let private vals (t: torch.Tensor) = t.detach().``to``(torch.float64).contiguous().view(-1L).data<float>().ToArray()

// Exact math on one row.
let private softmax (tau: float) (row: float[]) =
    let z = row |> Array.map (fun x -> Math.Exp(x / tau))
    let s = Array.sum z
    z |> Array.map (fun x -> x / s)
let private kl (p: float[]) (q: float[]) = Array.fold2 (fun acc pi qi -> if pi = 0.0 then acc else acc + pi * Math.Log(pi / qi)) 0.0 p q
let private jsd b (pS: float[]) (pT: float[]) =
    let m = Array.map2 (fun t s -> b * t + (1.0 - b) * s) pT pS
    b * kl pT m + (1.0 - b) * kl pS m

/// Per-token divergence by hand for a DistillOptions-like choice.
let private byHand (d: Divergence) b r tau (s: float[]) (t: float[]) =
    let pS, pT = softmax tau s, softmax tau t
    match d with
    | Divergence.Forward -> kl pT pS
    | Divergence.Reverse -> kl pS pT
    | Divergence.Symmetric -> r * kl pT pS + (1.0 - r) * kl pS pT
    | _ -> if b = 0.0 then kl pT pS elif b = 1.0 then kl pS pT else jsd b pS pT

let private kinds = [ Divergence.Forward; Divergence.Reverse; Divergence.Symmetric; Divergence.GeneralizedJsd ]

let private close (tol: float) (actual: float[]) (expected: float[]) what =
    Expect.equal actual.Length expected.Length $"{what}: length"
    for i in 0 .. actual.Length - 1 do
        if abs (actual[i] - expected[i]) > tol * (1.0 + abs expected[i]) then
            failtestf "%s: element %d is %.9g, expected %.9g" what i actual[i] expected[i]

[<Tests>]
let tests =
    testList "Distill" [
        for d in kinds do
            testCase $"{d} per token equals the divergence by hand" <| fun _ ->
                let o = DistillOptions(Divergence = d, Beta = 0.3, SymmetricRatio = 0.25)
                use got = DistillLosses.PerToken(logits student, logits teacher, o)
                Expect.equal got.shape [| 1L; 3L |] "(B, T)"
                close 1e-5 (vals got) (Array.map2 (byHand d 0.3 0.25 1.0) student teacher) (string d)

        testCase "GJSD at beta 0 is forward KL(T||S), at beta 1 reverse KL(S||T), computed directly" <| fun _ ->
            for b, want in [ 0.0, (fun s t -> kl (softmax 1.0 t) (softmax 1.0 s)); 1.0, (fun s t -> kl (softmax 1.0 s) (softmax 1.0 t)) ] do
                use got = DistillLosses.PerToken(logits student, logits teacher, DistillOptions(Beta = b))
                close 1e-5 (vals got) (Array.map2 want student teacher) $"beta {b}"
            // and not the mixture formula, which vanishes at the ends
            Expect.isLessThan (jsd 1e-9 (softmax 1.0 student[0]) (softmax 1.0 teacher[0])) 1e-6 "the mixture JSD itself vanishes at b -> 0"

        testCase "GJSD at beta 0.5 is symmetric in student and teacher" <| fun _ ->
            let o = DistillOptions(Beta = 0.5)
            use a = DistillLosses.PerToken(logits student, logits teacher, o)
            use b = DistillLosses.PerToken(logits teacher, logits student, o)
            close 1e-6 (vals a) (vals b) "JSD(S, T) = JSD(T, S)"
            use c = DistillLosses.PerToken(logits teacher, logits student, DistillOptions(Beta = 0.3))
            use e = DistillLosses.PerToken(logits student, logits teacher, DistillOptions(Beta = 0.7))
            close 1e-6 (vals c) (vals e) "swapping is beta -> 1 - beta"

        testCase "summed over scored tokens only; poisoned masked logits contribute nothing" <| fun _ ->
            let poisoned = Array.copy student
            poisoned[1] <- [| nan; infinity; -infinity; 1e30 |]
            for d in kinds do
                let o = DistillOptions(Divergence = d, Beta = 0.3)
                use got = DistillLosses.Summed(logits poisoned, logits teacher, tgt targets, o)
                let want = byHand d 0.3 0.5 1.0 student[0] teacher[0] + byHand d 0.3 0.5 1.0 student[2] teacher[2]
                Expect.floatClose Accuracy.medium (scalar got) want $"{d}: sum of t=0 and t=2"
            use none = DistillLosses.Summed(logits student, logits teacher, tgt [| -100L; -100L; -100L |], DistillOptions())
            Expect.equal (scalar none) 0.0 "nothing scored: 0"

        testCase "temperature divides both logits" <| fun _ ->
            for d in kinds do
                let o = DistillOptions(Divergence = d, Beta = 0.3, Temperature = 2.0)
                use got = DistillLosses.PerToken(logits student, logits teacher, o)
                close 1e-5 (vals got) (Array.map2 (byHand d 0.3 0.5 2.0) student teacher) $"{d} at tau 2"
            let t1 = byHand Divergence.Forward 0.0 0.5 1.0 student[0] teacher[0]
            let t2 = byHand Divergence.Forward 0.0 0.5 2.0 student[0] teacher[0]
            Expect.isLessThan t2 t1 "a higher temperature flattens both and brings them closer here"

        testCase "top-k with K = V equals the full version" <| fun _ ->
            use t = logits teacher
            let struct (values, indices) = t.topk(4)          // sorted: a permutation of the vocabulary
            for d in kinds do
                let o = DistillOptions(Divergence = d, Beta = 0.3, Temperature = 1.5)
                use full = DistillLosses.Summed(logits student, t, tgt targets, o)
                use topk = DistillLosses.SummedTopK(logits student, values, indices, tgt targets, o)
                Expect.floatClose Accuracy.medium (scalar topk) (scalar full) $"{d}"

        testCase "top-k with K < V renormalises both over the teacher's top-k" <| fun _ ->
            use t = logits teacher
            let struct (values, indices) = t.topk(2)
            use got = DistillLosses.SummedTopK(logits student, values, indices, tgt targets, DistillOptions(Divergence = Divergence.Forward))
            let restricted (row: float[]) (keep: int[]) = keep |> Array.map (fun k -> row[k])
            let top2 (row: float[]) = row |> Array.mapi (fun i x -> i, x) |> Array.sortByDescending snd |> Array.take 2 |> Array.map fst
            let tok i = let k = top2 teacher[i] in kl (softmax 1.0 (restricted teacher[i] k)) (softmax 1.0 (restricted student[i] k))
            Expect.floatClose Accuracy.medium (scalar got) (tok 0 + tok 2) "forward KL over the top-2 tokens"

        testCase "torchtune mix: (1 - kd_ratio) CE + kd_ratio KD" <| fun _ ->
            let o = DistillOptions(Divergence = Divergence.Forward, KdRatio = 0.25)
            let r = DistillLosses.Mixed(logits student, logits teacher, tgt targets, o)
            let ce = -Math.Log((softmax 1.0 student[0])[2]) - Math.Log((softmax 1.0 student[2])[3])
            let kd = byHand Divergence.Forward 0.0 0.5 1.0 student[0] teacher[0] + byHand Divergence.Forward 0.0 0.5 1.0 student[2] teacher[2]
            Expect.floatClose Accuracy.medium (scalar r.CrossEntropy) ce "CE summed over scored tokens"
            Expect.floatClose Accuracy.medium (scalar r.Divergence) kd "KD summed over scored tokens"
            Expect.floatClose Accuracy.medium (scalar r.Loss) (0.75 * ce + 0.25 * kd) "mix"

        testCase "gradients reach the student only through scored tokens" <| fun _ ->
            use s = (logits student).requires_grad_(true)
            use l = DistillLosses.Summed(s, logits teacher, tgt targets, DistillOptions())
            l.backward()
            let g = vals s.grad
            Expect.isTrue (g[4..7] |> Array.forall ((=) 0.0)) "masked position has zero gradient"
            Expect.isTrue (g[0..3] |> Array.exists ((<>) 0.0)) "scored position has a gradient"

        testCase "-inf logits (a padded vocabulary) give finite losses and gradients" <| fun _ ->
            let pad (rows: float[][]) = rows |> Array.map (fun r -> Array.append r [| -infinity |])
            for d in kinds do
                use s = (logits (pad student)).requires_grad_(true)
                use l = DistillLosses.Summed(s, logits (pad teacher), tgt targets, DistillOptions(Divergence = d, Beta = 0.3))
                let want = byHand d 0.3 0.5 1.0 student[0] teacher[0] + byHand d 0.3 0.5 1.0 student[2] teacher[2]
                Expect.floatClose Accuracy.medium (scalar l) want $"{d}: the padded entry changes nothing"
                l.backward()
                Expect.isTrue (vals s.grad |> Array.forall Double.IsFinite) $"{d}: finite gradient"

        testCase "shapes and options are checked with names" <| fun _ ->
            throwsWith<ArgumentException> (fun () -> DistillLosses.PerToken(torch.zeros(1L, 3L, 4L), torch.zeros(1L, 3L, 5L), DistillOptions()) |> ignore) [ "[1, 3, 4]"; "[1, 3, 5]" ] "vocab mismatch"
            throwsWith<ArgumentException> (fun () -> DistillLosses.PerToken(logits student, logits teacher, DistillOptions(Beta = 1.5)) |> ignore) [ "beta" ] "beta out of range"
            throwsWith<ArgumentException> (fun () -> DistillLosses.PerToken(logits student, logits teacher, DistillOptions(Temperature = 0.0)) |> ignore) [ "temperature" ] "temperature 0"
    ]

// ---------------------------------------------------------------------------------------------------------------
// The distill stage on prompt/completion data: teacher cache, on-policy batches, sequence-level KD, tokenizer check,
// and the claimed direction (a student distilled from a 4x teacher beats the same student on hard labels).

open System.IO
open System.Text.Json.Nodes
open Research.Data
open Research.Models
open Research.Training

let private words = [| "ant"; "bee"; "cat"; "dog"; "eel"; "fox"; "gnu"; "hen" |]
let private answers = [| "x"; "y"; "z" |]

/// Word i is answered x, y or z with probabilities that depend on i: a noisy task where the teacher's soft labels
/// carry what a few hard labels cannot (the distribution behind them).
let private answerProbs i = let a = 0.2 + 0.6 * float i / 7.0 in [| a; (1.0 - a) * 0.7; (1.0 - a) * 0.3 |]

let private noisyTask (seed: int64) (n: int) =
    let rng = Rng(seed)
    [ for j in 0 .. n - 1 ->
        let i = j % words.Length
        let u = rng.NextDouble()
        let p = answerProbs i
        let k = if u < p[0] then 0 elif u < p[0] + p[1] then 1 else 2
        let o = JsonObject()
        o["prompt"] <- JsonValue.Create($"{words[i]}?")
        o["completion"] <- JsonValue.Create(answers[k])
        o.ToJsonString() ]

/// A teacher 4x the micro student's parameters (same byte tokenizer).
let private teacherConfig =
    ModelConfig(VocabSize = 259, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 3,
                NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64)

let private paramCount (m: CausalLM) = m.parameters() |> Seq.sumBy (fun p -> p.numel())

let private quick steps lr =
    TrainConfig(Steps = steps, BatchSize = 8, LearningRate = lr, WarmupSteps = 2, WeightDecay = 0.0, LogEvery = 5, EvalEvery = 0, CheckpointEvery = 0)

let private stageCtx (dir: string) (name: string) (parents: string list) =
    StageContext(name, Path.Combine(dir, name), List.toArray parents, [||], 5L, torch.CPU, TextWriter.Null)

/// One workspace for the list: the student base, a trained 4x teacher, the small data, a held-out file.
type private Workspace = { Dir: string; Student: string; Teacher: string; Small: string; Heldout: string }

let private workspace =
    lazy (
        let dir = tempDir "distill-stage"
        let write name (lines: string list) = let p = Path.Combine(dir, name) in File.WriteAllLines(p, lines); p
        let student = Path.Combine(dir, "student")
        (use m = microModel 3L in Checkpoint.Save(student, m, ByteTokenizer.Instance))
        let teacherBase = Path.Combine(dir, "teacher-base")
        (use m = new CausalLM(teacherConfig, 4L) in Checkpoint.Save(teacherBase, m, ByteTokenizer.Instance))
        let big = write "big.jsonl" (noisyTask 1L 400)
        let tune = TuneOptions(DataPath = big, BlockLength = 8, Packing = false, ValidationFraction = 0.05, Train = quick 100 1e-2)
        let c = stageCtx dir "teacher" [ teacherBase ]
        TuneExecutor().Execute(c, tune) |> ignore
        { Dir = dir; Student = student; Teacher = c.FinalCheckpoint
          Small = write "small.jsonl" (noisyTask 2L 24); Heldout = write "heldout.jsonl" (noisyTask 3L 200) })

let private distillOptions (ws: Workspace) steps =
    DistillStageOptions(DataPath = ws.Small, BlockLength = 8, MaxNewTokens = 4, ValidationFraction = 0.05, Train = quick steps 3e-3)

let private withTopK (o: DistillStageOptions) (k: int) = o.WithTeacherTopK k
let private onPolicy (o: DistillStageOptions) (lambda: float) = o.WithOnPolicy lambda
let private sequenceLevel (o: DistillStageOptions) = o.WithSequenceLevel true
let private kdRatio (o: DistillStageOptions) (r: float) = o.WithLoss(o.Loss.WithKdRatio r)

let private runDistill (name: string) (o: DistillStageOptions) =
    let ws = workspace.Force()
    let c = stageCtx ws.Dir name [ ws.Student; ws.Teacher ]
    let metrics = DistillExecutor().Execute(c, o)
    c, metrics

let private weightsOf (dir: string) = Safetensors.LoadDirectory dir

let private maxWeightDiff (a: string) (b: string) =
    let wa, wb = weightsOf a, weightsOf b
    wa.Keys |> Seq.map (fun k -> maxAbsDiff wa[k] wb[k]) |> Seq.max

/// Mean cross-entropy per completion token of a checkpoint on a JSONL file.
let private heldoutLoss (checkpoint: string) (jsonl: string) =
    let struct (m, tok) = Checkpoint.Load checkpoint
    use m = m
    let seqs = SftPreparation.Prepare(SftData.Read jsonl, ChatTemplates.Plain, tok, 9, SftTruncation.KeepCompletion).Sequences
    Tune.Validate(m, seqs, 64, tok.PadId)["val_loss"]

/// Training-metric lines of a stage's metrics.jsonl.
let private trainLines (stageDir: string) =
    File.ReadAllLines(Path.Combine(stageDir, Trainer.MetricsFile))
    |> Array.map (fun l -> JsonNode.Parse(l))
    |> Array.filter (fun n -> n["kind"].GetValue<string>() = "train")

[<Tests>]
let stageTests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "Distill" [
        testList "stage" [
            testCase "the teacher top-k cache holds the live teacher's top-k, is reused by key, and trains as the live teacher (K = V)" <| fun _ ->
                let ws = workspace.Force()
                let tok = ByteTokenizer.Instance
                let seqs = SftPreparation.Prepare(SftData.Read ws.Small, ChatTemplates.Plain, tok, 9, SftTruncation.KeepCompletion).Sequences
                let cacheDir = Path.Combine(ws.Dir, "cache-check")
                let before = TeacherTopKCache.Computations
                use cache = TeacherTopKCache.Prepare(ws.Teacher, cacheDir, seqs, 5, torch.CPU, 8, tok.PadId)
                Expect.equal (TeacherTopKCache.Computations - before) 1 "computed once"
                let struct (teacher, _) = Checkpoint.Load ws.Teacher
                use teacher = teacher
                for i in [ 0; 7; seqs.Count - 1 ] do
                    let s = seqs[i]
                    use live = teacher.Forward(torch.tensor(s.Ids[.. s.Length - 2] |> Array.map int64, dtype = torch.int64).unsqueeze(0L))
                    let struct (v, ix) = live.topk(5)
                    let t = int64 (s.Length - 1)
                    Expect.isLessThan (maxAbsDiff (cache.Values[int64 i].narrow(0L, 0L, t)) v[0L]) 1e-5 $"values of sequence {i}"
                    Expect.equal (cache.Indices[int64 i].narrow(0L, 0L, t).data<int64>().ToArray()) (ix[0L].contiguous().data<int64>().ToArray()) $"indices of sequence {i}"
                use again = TeacherTopKCache.Prepare(ws.Teacher, cacheDir, seqs, 5, torch.CPU, 8, tok.PadId)
                Expect.equal (TeacherTopKCache.Computations - before) 1 "same key: read back, the teacher not run"
                use other = TeacherTopKCache.Prepare(ws.Teacher, cacheDir, seqs, 4, torch.CPU, 8, tok.PadId)
                Expect.equal (TeacherTopKCache.Computations - before) 2 "another K: recomputed"
                // Training on a full-vocabulary cache is training against the live teacher.
                let o = distillOptions ws 6
                let live, _ = runDistill "live" o
                let cached, _ = runDistill "cached" (withTopK o 259)
                Expect.isTrue (File.Exists(Path.Combine(cached.Directory, TeacherTopKCache.FileName))) "cache file in the stage directory"
                Expect.isLessThan (maxWeightDiff live.FinalCheckpoint cached.FinalCheckpoint) 1e-4 "same weights after 6 steps"

            testCase "on-policy: lambda 0 trains exactly as off-policy; draws follow lambda; lambda 1 scores the student's samples" <| fun _ ->
                let ws = workspace.Force()
                let o = distillOptions ws 6
                let off, _ = runDistill "off" o
                let tiny, _ = runDistill "lambda-tiny" (onPolicy o 1e-12)
                Expect.equal (maxWeightDiff off.FinalCheckpoint tiny.FinalCheckpoint) 0.0 "no on-policy draw: bit-identical to off-policy"
                let objective lambda =
                    let m = microModel 3L
                    let tok = ByteTokenizer.Instance
                    let seqs = SftPreparation.Prepare(SftData.Read ws.Small, ChatTemplates.Plain, tok, 9, SftTruncation.KeepCompletion).Sequences
                    DistillSftObjective(seqs, m, m, null, onPolicy o lambda, 5L, tok, "x")
                let half = objective 0.3
                let share = [ for s in 0L .. 399L -> if half.IsOnPolicy(s, 0) then 1.0 else 0.0 ] |> List.average
                Expect.isTrue (abs (share - 0.3) < 0.07) $"share of on-policy micro-batches {share} near lambda 0.3"
                let all = objective 1.0
                use b = all.Batch(0L, 0, quick 6 3e-3, torch.CPU)
                Expect.isTrue b.OnPolicy "lambda 1: on-policy"
                let prompt = SftData.Read ws.Small |> Seq.head
                Expect.isGreaterThan b.Normalizer 0L "sampled completions are trained tokens"
                let on, metrics = runDistill "on" (onPolicy o 1.0)
                Expect.equal metrics["on_policy"] 1.0 "every batch on-policy"
                Expect.isTrue (Double.IsFinite metrics["kd"]) "finite divergence"
                Expect.isGreaterThan (maxWeightDiff off.FinalCheckpoint on.FinalCheckpoint) 1e-6 "on-policy trains differently"
                ignore prompt

            testCase "same seed, same on-policy run: identical weights" <| fun _ ->
                let ws = workspace.Force()
                let o = onPolicy (distillOptions ws 5) 0.5
                let a, _ = runDistill "det-a" o
                let b, _ = runDistill "det-b" o
                Expect.equal (maxWeightDiff a.FinalCheckpoint b.FinalCheckpoint) 0.0 "bit-identical"

            testCase "sequence-level KD writes the teacher's greedy answers as JSONL and tunes the student on them" <| fun _ ->
                let ws = workspace.Force()
                let c, metrics = runDistill "seqkd" (sequenceLevel (distillOptions ws 6))
                let path = Path.Combine(c.Directory, SequenceKd.FileName)
                let lines = SftData.Read path
                let tok = ByteTokenizer.Instance
                let struct (train, _) = SftData.Split(SftData.Read ws.Small, 0.05, 5L)
                Expect.equal lines.Count train.Count "one answer per training prompt"
                let struct (teacher, _) = Checkpoint.Load ws.Teacher
                use teacher = teacher
                for ex in Seq.take 3 lines do
                    let prompt = Array.append [| tok.BosId |] (tok.Encode ex.Prompt)
                    let out = Generation.Generate(teacher, prompt, SamplingOptions(MaxNewTokens = 4, StopToken = Nullable tok.EosId))
                    let answer = if out.Length > 0 && out[out.Length - 1] = tok.EosId then out[.. out.Length - 2] else out
                    Expect.equal ex.Completion (tok.Decode answer) $"greedy teacher answer to {ex.Prompt}"
                Expect.isTrue (Double.IsFinite metrics["loss"]) "trained"

            testCase "teacher and student with different vocabularies: an error naming both" <| fun _ ->
                let ws = workspace.Force()
                let other = Path.Combine(ws.Dir, "teacher-300")
                (use m = new CausalLM(ModelConfig(VocabSize = 300, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64), 1L)
                 Checkpoint.Save(other, m, ByteTokenizer.Instance))
                let c = stageCtx ws.Dir "mismatch" [ ws.Student; other ]
                throwsWith<InvalidDataException> (fun () -> DistillExecutor().Execute(c, distillOptions ws 2) |> ignore)
                    [ other; ws.Student; "300"; "259"; "share a tokenizer" ] "vocabulary mismatch"
                throwsWith<ArgumentException> (fun () -> DistillExecutor().Execute(stageCtx ws.Dir "bad" [ ws.Student; ws.Teacher ], onPolicy (withTopK (distillOptions ws 2) 5) 0.5) |> ignore)
                    [ "teacher_top_k"; "on_policy_lambda" ] "on-policy needs the live teacher"

            testCase "a student distilled from a 4x teacher beats the same student on hard labels of the same small data" <| fun _ ->
                let ws = workspace.Force()
                let struct (s, _) = Checkpoint.Load ws.Student
                let struct (t, _) = Checkpoint.Load ws.Teacher
                let ratio = float (paramCount t) / float (paramCount s)
                s.Dispose(); t.Dispose()
                Expect.isGreaterThanOrEqual ratio 4.0 $"teacher / student parameters = {ratio:F2}"
                let o = distillOptions ws 100
                let hard, _ = runDistill "hard" (kdRatio o 0.0)
                let soft, _ = runDistill "soft" (kdRatio o 0.9)
                let lHard, lSoft, lTeacher = heldoutLoss hard.FinalCheckpoint ws.Heldout, heldoutLoss soft.FinalCheckpoint ws.Heldout, heldoutLoss ws.Teacher ws.Heldout
                printfn "distill direction (tiny): held-out loss teacher %.4f, student hard labels %.4f, student distilled %.4f (ratio %.2f)" lTeacher lHard lSoft ratio
                Expect.isLessThan lSoft lHard "distilled student has the lower held-out loss"
        ]
    ]
