module Research.Tests.TrainingTests

open System.IO
open Expecto
open TorchSharp
open Research.Models
open Research.Data
open Research.Stages
open Research.Training
open Research.Runs
open Research.Tests.TestUtil

let private docs n seed = Research.Data.Synthetic.QuickWorld.General(n, seed)
let private blocks = lazy (Packing.Pack(docs 60 1, ByteTokenizer.Instance, 32))

let private config steps =
    TrainConfig(Steps = steps, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 2, LogEvery = 2, EvalEvery = 0, CheckpointEvery = 4, Seed = 5L)

let private objective () = Adapt.Pretrain(blocks.Value, config 1, "test")

let private quiet = TextWriter.Null

/// Gradients of every parameter after one accumulated step, as (name, tensor) in order.
let private gradientsAfter (batch: int) (accumulation: int) =
    use m = microModel 21L
    let cfg = TrainConfig(BatchSize = batch, Accumulation = accumulation)
    let obj = objective ()
    let batches = [ for micro in 0 .. accumulation - 1 -> obj.Batch(0L, micro, cfg, torch.CPU) ]
    let normalizer = batches |> List.sumBy (fun b -> b.Normalizer)
    use sink = new MetricSink()
    for b in batches do
        let loss = obj.Loss(m, b, sink) / float normalizer
        loss.backward()
    [ for struct (n, p) in m.named_parameters() -> n, p.grad.clone() ]

let private metricsWithoutTime path =
    MetricsLog.Read path
    |> Seq.map (fun o ->
        for f in MetricsLog.TimeFields do o.Remove f |> ignore
        o.ToJsonString())
    |> List.ofSeq

[<Tests>]
let tests =
    testList "Training" [
        testCase "cosine and WSD schedules: warmup, peak, floor" <| fun _ ->
            let c = TrainConfig(Steps = 111, LearningRate = 1.0, MinLrRatio = 0.1, WarmupSteps = 10)
            Expect.floatClose Accuracy.high (Schedules.LearningRate(c, 0L)) 0.1 "warmup starts at lr/warmup"
            Expect.floatClose Accuracy.high (Schedules.LearningRate(c, 9L)) 1.0 "warmup ends at peak"
            Expect.floatClose Accuracy.high (Schedules.LearningRate(c, 110L)) 0.1 "cosine ends at min"
            Expect.floatClose Accuracy.high (Schedules.LearningRate(c, 60L)) 0.55 "cosine midpoint halfway"
            let w = TrainConfig(Steps = 100, LearningRate = 1.0, MinLrRatio = 0.0, WarmupSteps = 10, Schedule = LrSchedule.Wsd, DecayFraction = 0.2)
            Expect.floatClose Accuracy.high (Schedules.LearningRate(w, 50L)) 1.0 "stable phase"
            Expect.floatClose Accuracy.high (Schedules.LearningRate(w, 89L)) 0.5 "halfway down the decay"
            Expect.floatClose Accuracy.high (Schedules.LearningRate(w, 99L)) 0.0 "decays to min"

        testCase "AdamW step equals the formula by hand" <| fun _ ->
            let p = torch.nn.Parameter(torch.tensor([| 1.0f; -2.0f |]))
            p.grad <- torch.tensor([| 0.5f; 0.25f |])
            use opt = new AdamW([ struct ("w", p) ] |> Seq.map (fun struct (n, p) -> System.ValueTuple.Create(n, p)))
            let c = TrainConfig(Beta1 = 0.9, Beta2 = 0.95, Epsilon = 1e-8, WeightDecay = 0.0)
            opt.Step(0.1, c)
            // first step: m_hat = g, v_hat = g^2, update = lr * g / (|g| + eps) = lr * sign(g)
            Expect.floatClose Accuracy.medium (float (p[0L].item<float32>())) 0.9 "p0"
            Expect.floatClose Accuracy.medium (float (p[1L].item<float32>())) -2.1 "p1"

        testCase "gradient accumulation 2 x 4 gives the gradients of 1 x 8 (within 1e-6)" <| fun _ ->
            let a = gradientsAfter 8 1
            let b = gradientsAfter 4 2
            for (n, ga), (_, gb) in List.zip a b do
                Expect.isLessThan (maxAbsDiff ga gb) 1e-6 $"{n}"

        testCase "loss falls on a tiny corpus" <| fun _ ->
            use m = microModel 22L
            let dir = tempDir "falls"
            let r = Trainer.Run(m, ByteTokenizer.Instance, objective (), config 40, dir, null, quiet)
            let lines = MetricsLog.Read(Path.Combine(dir, "metrics.jsonl")) |> Seq.filter (fun o -> string o["kind"] = "train") |> Array.ofSeq
            let first = (lines[0]["loss"]).GetValue<float>()
            let last = (lines[lines.Length - 1]["loss"]).GetValue<float>()
            Expect.isLessThan last (first * 0.6) $"loss {first} -> {last}"
            Expect.isTrue (Checkpoint.Exists r.FinalCheckpoint) "final checkpoint written"

        testCase "resume after interruption ends with the same metrics and weights as an uninterrupted run" <| fun _ ->
            let full = tempDir "full"
            use m1 = microModel 23L
            Trainer.Run(m1, ByteTokenizer.Instance, objective (), config 12, full, null, quiet) |> ignore
            // interrupted: run 8 steps of the 12-step config (checkpoint at 4 and 8), then lose the process
            let cut = tempDir "cut"
            use m2 = microModel 23L
            let stopAt8 = { new IObjective<LmBatch> with
                              member _.Kind = "pretrain"
                              member _.Fingerprint = (objective ()).Fingerprint
                              member _.Batch(step, micro, cfg, dev) =
                                  if step >= 9L then failwith "killed" else (objective ()).Batch(step, micro, cfg, dev)
                              member _.Loss(model, b, s) = (objective ()).Loss(model, b, s) }
            Expect.throws (fun () -> Trainer.Run(m2, ByteTokenizer.Instance, stopAt8, config 12, cut, null, quiet) |> ignore) "interrupted"
            Expect.isTrue (TrainCheckpoint.Exists(Path.Combine(cut, Trainer.LastDir))) "a checkpoint survived"
            use m3 = microModel 99L // different init: everything must come from the checkpoint
            let out = new StringWriter()
            let r = Trainer.Run(m3, ByteTokenizer.Instance, objective (), config 12, cut, null, out)
            Expect.equal r.ResumedFrom 8L "resumed from step 8"
            Expect.stringContains (out.ToString()) "resuming from the last checkpoint, step 8" "says it resumes"
            Expect.equal (metricsWithoutTime (Path.Combine(cut, "metrics.jsonl"))) (metricsWithoutTime (Path.Combine(full, "metrics.jsonl"))) "same metrics"
            for (struct (n, a)), (struct (_, b)) in Seq.zip (m1.named_parameters()) (m3.named_parameters()) do
                Expect.isTrue (a.allclose(b, 0.0, 0.0)) $"{n} identical"

        testCase "NaN loss stops training, names the step and keeps the last good checkpoint" <| fun _ ->
            use m = microModel 24L
            let dir = tempDir "nan"
            let mutable calls = 0
            let nanAt6 = { new IObjective<LmBatch> with
                             member _.Kind = "pretrain"
                             member _.Fingerprint = "nan"
                             member _.Batch(step, micro, cfg, dev) = (objective ()).Batch(step, micro, cfg, dev)
                             member _.Loss(model, b, s) =
                                 calls <- calls + 1
                                 let l = (objective ()).Loss(model, b, s)
                                 if calls = 6 then l * torch.tensor(nan) else l }
            throwsWith<TrainingDivergedException>
                (fun () -> Trainer.Run(m, ByteTokenizer.Instance, nanAt6, config 12, dir, null, quiet) |> ignore)
                [ "at step 6"; "last good checkpoint (step 4)" ] "diverged"
            let state = File.ReadAllText(Path.Combine(dir, Trainer.LastDir, TrainCheckpoint.StateFile))
            Expect.stringContains state "\"step\": 4" "checkpoint of step 4 kept"
            Expect.isFalse (Directory.Exists(Path.Combine(dir, Trainer.FinalDir))) "no final checkpoint from a diverged run"

        testCase "a step whose targets are all masked is a loud error" <| fun _ ->
            use m = microModel 25L
            let masked = { new IObjective<LmBatch> with
                             member _.Kind = "tune"
                             member _.Fingerprint = "masked"
                             member _.Batch(step, micro, cfg, dev) =
                                 let b = (objective ()).Batch(step, micro, cfg, dev)
                                 new LmBatch(b.Input, b.Target.fill_(-100L), 0L, b.Tokens)
                             member _.Loss(model, b, s) = (objective ()).Loss(model, b, s) }
            throwsWith<System.InvalidOperationException>
                (fun () -> Trainer.Run(m, ByteTokenizer.Instance, masked, config 4, tempDir "masked", null, quiet) |> ignore)
                [ "no token to learn from" ] "masked"

        testCase "resume refuses a checkpoint made with another configuration" <| fun _ ->
            let dir = tempDir "other"
            use m = microModel 26L
            let cut = { new IObjective<LmBatch> with
                          member _.Kind = "pretrain"
                          member _.Fingerprint = (objective ()).Fingerprint
                          member _.Batch(step, micro, cfg, dev) = if step >= 5L then failwith "killed" else (objective ()).Batch(step, micro, cfg, dev)
                          member _.Loss(model, b, s) = (objective ()).Loss(model, b, s) }
            Expect.throws (fun () -> Trainer.Run(m, ByteTokenizer.Instance, cut, config 12, dir, null, quiet) |> ignore) "interrupted"
            let other = TrainConfig(Steps = 12, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 2, LogEvery = 2, EvalEvery = 0, CheckpointEvery = 4, Seed = 5L)
            throwsWith<System.InvalidOperationException>
                (fun () -> Trainer.Run(m, ByteTokenizer.Instance, objective (), other, dir, null, quiet) |> ignore)
                [ "another configuration" ] "config changed"

        testCase "replay mixes the general corpus at the asked share" <| fun _ ->
            let general = Packing.Pack(docs 40 2, ByteTokenizer.Instance, 16)
            let domain = Packing.Pack(Research.Data.Synthetic.QuickWorld.Finance(40, 2), ByteTokenizer.Instance, 16)
            let obj = Adapt.Objective(domain, general, AdaptOptions(Replay = 0.25), "t")
            let cfg = TrainConfig(BatchSize = 8)
            let generalFirstTokens = set [ for i in 0 .. general.Count - 1 -> general.Block(i).ToArray() |> Array.toList ]
            let mutable fromGeneral = 0
            for step in 0L .. 9L do
                use b = obj.Batch(step, 0, cfg, torch.CPU)
                for row in 0L .. 7L do
                    let inputs = b.Input[row].data<int64>().ToArray() |> Array.map int |> Array.toList
                    let target = b.Target[row, -1L].item<int64>() |> int
                    if generalFirstTokens.Contains(inputs @ [ target ]) then fromGeneral <- fromGeneral + 1
            Expect.equal fromGeneral 20 "20 of 80 sequences are general text"
    ]
