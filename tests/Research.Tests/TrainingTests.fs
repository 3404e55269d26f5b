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

/// Runs 12 steps straight, and 8 steps then a "killed" process then a resume; both must end identical.
let private resumeEquivalence (precision: Precision) =
    let cfg = (config 12).WithPrecision(precision).WithForceBf16 true   // bf16 is tested on every CPU, native or not
    let full = tempDir "full"
    use m1 = microModel 23L
    Trainer.Run(m1, ByteTokenizer.Instance, objective (), cfg, full, null, quiet) |> ignore
    // interrupted: run 8 steps of the 12-step config (checkpoint at 4 and 8), then lose the process
    let cut = tempDir "cut"
    use m2 = microModel 23L
    let stopAt8 = { new IObjective<LmBatch> with
                      member _.Kind = "pretrain"
                      member _.Fingerprint = (objective ()).Fingerprint
                      member _.Batch(step, micro, c, dev) =
                          if step >= 9L then failwith "killed" else (objective ()).Batch(step, micro, c, dev)
                      member _.Loss(model, b, s) = (objective ()).Loss(model, b, s) }
    Expect.throws (fun () -> Trainer.Run(m2, ByteTokenizer.Instance, stopAt8, cfg, cut, null, quiet) |> ignore) "interrupted"
    Expect.isTrue (TrainCheckpoint.Exists(Path.Combine(cut, Trainer.LastDir))) "a checkpoint survived"
    use m3 = microModel 99L // different init: everything must come from the checkpoint
    let out = new StringWriter()
    let r = Trainer.Run(m3, ByteTokenizer.Instance, objective (), cfg, cut, null, out)
    Expect.equal r.ResumedFrom 8L "resumed from step 8"
    Expect.stringContains (out.ToString()) "resuming from the last checkpoint, step 8" "says it resumes"
    Expect.equal (metricsWithoutTime (Path.Combine(cut, "metrics.jsonl"))) (metricsWithoutTime (Path.Combine(full, "metrics.jsonl"))) "same metrics"
    for (struct (n, a)), (struct (_, b)) in Seq.zip (m1.named_parameters()) (m3.named_parameters()) do
        Expect.equal a.dtype torch.float32 $"{n} back in float32"
        Expect.isTrue (a.allclose(b, 0.0, 0.0)) $"{n} identical"

/// Train losses logged by a run of `steps` steps in the given precision.
let private lossCurve (precision: Precision) steps =
    let cfg = (config steps).WithPrecision(precision).WithForceBf16 true
    use m = microModel 31L
    let dir = tempDir "curve"
    Trainer.Run(m, ByteTokenizer.Instance, objective (), cfg, dir, null, quiet) |> ignore
    MetricsLog.Read(Path.Combine(dir, "metrics.jsonl")) |> Seq.filter (fun o -> string o["kind"] = "train")
    |> Seq.map (fun o -> (o["loss"]).GetValue<float>()) |> Array.ofSeq

/// The test objective, killed when it reaches step 5 (after the checkpoint at step 4).
let private killedAtStep5 () =
    { new IObjective<LmBatch> with
        member _.Kind = "pretrain"
        member _.Fingerprint = (objective ()).Fingerprint
        member _.Batch(step, micro, cfg, dev) = if step >= 5L then failwith "killed" else (objective ()).Batch(step, micro, cfg, dev)
        member _.Loss(model, b, s) = (objective ()).Loss(model, b, s) }

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
            resumeEquivalence Precision.Float32

        testCase "bf16 with float32 master weights: resume is exact too, and the output is float32" <| fun _ ->
            resumeEquivalence Precision.BFloat16

        testCase "bf16 loss curve within 2% of float32's over the same steps" <| fun _ ->
            let f32 = lossCurve Precision.Float32 40
            let b16 = lossCurve Precision.BFloat16 40
            Expect.equal b16.Length f32.Length "same logged steps"
            for i in 0 .. f32.Length - 1 do
                Expect.isLessThan (abs (b16[i] - f32[i]) / f32[i]) 0.02 $"log line {i}: bf16 {b16[i]} vs float32 {f32[i]}"
            Expect.isLessThan f32[f32.Length - 1] (f32[0] * 0.8) "and it learned"

        testCase "flat AdamW: parameters and gradients are views of one buffer per group; three steps equal the formula" <| fun _ ->
            let w = torch.nn.Parameter(torch.tensor([| 1.0f; -2.0f; 0.5f; 3.0f |]).reshape(2L, 2L))
            let b = torch.nn.Parameter(torch.tensor([| 0.1f; -0.3f |]))
            let frozen = torch.nn.Parameter(torch.tensor([| 7.0f |]), requires_grad = false)
            use opt = new AdamW([ struct ("w", w); struct ("b", b); struct ("frozen", frozen) ] |> Seq.map (fun struct (n, p) -> System.ValueTuple.Create(n, p)))
            let c = TrainConfig(Beta1 = 0.9, Beta2 = 0.95, Epsilon = 1e-8, WeightDecay = 0.1)
            let lr = 0.05
            // the reference: torch.optim.AdamW's update written out per element, in float64
            let pw = [| 1.0; -2.0; 0.5; 3.0 |]
            let pb = [| 0.1; -0.3 |]
            let mw, vw, mb, vb = Array.zeroCreate 4, Array.zeroCreate 4, Array.zeroCreate 2, Array.zeroCreate 2
            let grads = [ [| 0.5; 0.25; -1.0; 2.0 |], [| 0.3; -0.1 |]; [| -0.2; 0.4; 0.1; -0.5 |], [| 0.05; 0.2 |]; [| 1.0; 1.0; -1.0; 0.0 |], [| -0.4; 0.0 |] ]
            grads |> List.iteri (fun i (gw, gb) ->
                opt.ZeroGrad()
                // through the parameters' own .grad: they are views of the flat gradient buffer
                w.grad.copy_(torch.tensor(Array.map float32 gw).reshape(2L, 2L)) |> ignore
                b.grad.copy_(torch.tensor(Array.map float32 gb)) |> ignore
                use norm = opt.ClipGradNorm(0.0)
                let expectedNorm = sqrt (Array.sumBy (fun x -> x * x) (Array.append gw gb))
                Expect.floatClose Accuracy.medium (float (norm.item<float32>())) expectedNorm "the flat norm covers both groups"
                opt.Step(lr, c)
                let t = float (i + 1)
                let update (p: float[]) (m: float[]) (v: float[]) (g: float[]) decay =
                    for k in 0 .. p.Length - 1 do
                        if decay then p[k] <- p[k] * (1.0 - lr * c.WeightDecay)
                        m[k] <- c.Beta1 * m[k] + (1.0 - c.Beta1) * g[k]
                        v[k] <- c.Beta2 * v[k] + (1.0 - c.Beta2) * g[k] * g[k]
                        let mhat = m[k] / (1.0 - c.Beta1 ** t)
                        let vhat = v[k] / (1.0 - c.Beta2 ** t)
                        p[k] <- p[k] - lr * mhat / (sqrt vhat + c.Epsilon)
                update pw mw vw gw true
                update pb mb vb gb false)
            let actualW = w.detach().reshape(-1L).data<float32>().ToArray() |> Array.map float
            let actualB = b.detach().data<float32>().ToArray() |> Array.map float
            for k in 0 .. 3 do Expect.floatClose Accuracy.medium actualW[k] pw[k] $"w[{k}]"
            for k in 0 .. 1 do Expect.floatClose Accuracy.medium actualB[k] pb[k] $"b[{k}] (no weight decay on vectors)"
            Expect.equal (frozen.item<float32>()) 7.0f "a frozen parameter is not touched"
            Expect.equal (opt.StateTensors() |> Seq.map (fun kv -> kv.Key) |> Seq.sort |> List.ofSeq) [ "exp_avg.b"; "exp_avg.w"; "exp_avg_sq.b"; "exp_avg_sq.w" ] "state by name"

        testCase "fused one-pass AdamW equals the separate-kernel update (float32, and bf16 with master weights)" <| fun _ ->
            // 70,001 elements: several chunks of the fused kernel, and a tail that is not a multiple of the vector width.
            let run fused (low: bool) =
                // Own generators: torch.manual_seed would reseed the process-wide one that parallel tests draw from.
                use g = new torch.Generator(3UL)
                let w32 = torch.randn([| 70001L |], generator = g)
                let p = torch.nn.Parameter(if low then w32.``to``(torch.bfloat16) else w32.clone())
                let master = if low then readOnlyDict [ "w", w32 ] else null
                let opt = new AdamW([ System.ValueTuple.Create("w", p) ], master, Fused = fused)
                let c = TrainConfig(Beta1 = 0.9, Beta2 = 0.95, Epsilon = 1e-8, WeightDecay = 0.1)
                for step in 1 .. 4 do
                    opt.ZeroGrad()
                    use gs = new torch.Generator(uint64 (10 + step))
                    p.grad.copy_(torch.randn([| 70001L |], generator = gs).``to``(p.dtype)) |> ignore
                    opt.Step(1e-2, c)
                let state = opt.StateTensors() |> Seq.map (fun kv -> kv.Key, kv.Value.clone()) |> Map.ofSeq
                p.detach().``to``(torch.float32), state
            for low in [ false; true ] do
                let pa, sa = run false low
                let pb, sb = run true low
                for KeyValue(k, t) in sa do
                    Expect.isLessThan (maxAbsDiff t sb[k]) 1e-5 $"{k} (low precision: {low})"
                // bf16 parameters are rounded from master weights that agree to float32 rounding: at most one bf16 step apart
                Expect.isLessThan (maxAbsDiff pa pb) (if low then 0.04 else 1e-5) $"parameters (low precision: {low})"
                Expect.isFalse (pa.isnan().any().item<bool>()) "finite"

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

        testCase "NaN weights after a finite loss are refused before the checkpoint, naming the tensor and step" <| fun _ ->
            use m = microModel 30L
            let dir = tempDir "nan-weights"
            // Validation runs at step 8, after that step's (finite) loss and update and before its checkpoint: it stands
            // for an update that overflowed, which no loss has measured yet.
            let struct (poisoned, _) = m.named_parameters() |> Seq.item 3
            let validate (model: CausalLM) =
                let struct (_, p) = model.named_parameters() |> Seq.item 3
                use _ = torch.no_grad()
                p.view(-1L).[0L].fill_(Scalar.op_Implicit infinity) |> ignore
                readOnlyDict [ "val_loss", 1.0 ]
            let cfg = TrainConfig(Steps = 12, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 2, LogEvery = 2, EvalEvery = 8, CheckpointEvery = 4, Seed = 5L)
            throwsWith<TrainingDivergedException>
                (fun () -> Trainer.Run(m, ByteTokenizer.Instance, objective (), cfg, dir, validate, quiet) |> ignore)
                [ $"parameter '{poisoned}'"; "at step 8"; "last good checkpoint (step 4)" ] "names the tensor, the step and what is kept"
            let state = File.ReadAllText(Path.Combine(dir, Trainer.LastDir, TrainCheckpoint.StateFile))
            Expect.stringContains state "\"step\": 4" "the step-4 checkpoint is kept, not replaced by NaN weights"
            Expect.isFalse (Directory.Exists(Path.Combine(dir, Trainer.FinalDir))) "no final/"

        testCase "an optimizer moment that overflowed while the weights stayed finite is refused before the checkpoint" <| fun _ ->
            use m = microModel 32L
            let dir = tempDir "inf-moments"
            // At step 7 the loss is scaled by 1e25: still finite, but its squared gradients overflow exp_avg_sq to infinity,
            // and the update (exp_avg / sqrt(exp_avg_sq)) stays finite, so the weights do too. Unclipped, as a run with
            // grad_clip 0 would be.
            let mutable current = 0L
            let spike = { new IObjective<LmBatch> with
                            member _.Kind = "pretrain"
                            member _.Fingerprint = (objective ()).Fingerprint
                            member _.Batch(step, micro, c, dev) = current <- step; (objective ()).Batch(step, micro, c, dev)
                            member _.Loss(model, b, sink) =
                                let loss = (objective ()).Loss(model, b, sink)
                                if current = 6L then loss * 1e25 else loss }
            let cfg = TrainConfig(Steps = 12, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 2, LogEvery = 2, EvalEvery = 0, CheckpointEvery = 4,
                                  GradClip = 0.0, Seed = 5L)
            throwsWith<TrainingDivergedException>
                (fun () -> Trainer.Run(m, ByteTokenizer.Instance, spike, cfg, dir, null, quiet) |> ignore)
                [ "optimizer state 'exp_avg_sq."; "at step 8"; "last good checkpoint (step 4)" ] "names the moment, the step and what is kept"
            Expect.isNull (FiniteCheck.FirstNonFinite m) "the weights themselves are finite"
            let state = File.ReadAllText(Path.Combine(dir, Trainer.LastDir, TrainCheckpoint.StateFile))
            Expect.stringContains state "\"step\": 4" "the step-4 checkpoint is kept"

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
            let cut = killedAtStep5 ()
            Expect.throws (fun () -> Trainer.Run(m, ByteTokenizer.Instance, cut, config 12, dir, null, quiet) |> ignore) "interrupted"
            let other = TrainConfig(Steps = 12, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 2, LogEvery = 2, EvalEvery = 0, CheckpointEvery = 4, Seed = 5L)
            throwsWith<System.InvalidOperationException>
                (fun () -> Trainer.Run(m, ByteTokenizer.Instance, objective (), other, dir, null, quiet) |> ignore)
                [ "another configuration" ] "config changed"

        testCase "a finished run leaves checkpoints/last for its caller to remove once recorded; a rerun resumes from it" <| fun _ ->
            let dir = tempDir "keep-last"
            use m = microModel 27L
            Trainer.Run(m, ByteTokenizer.Instance, objective (), config 12, dir, null, quiet) |> ignore
            Expect.isTrue (Checkpoint.Exists(Path.Combine(dir, Trainer.FinalDir))) "final written"
            Expect.isTrue (TrainCheckpoint.Exists(Path.Combine(dir, Trainer.LastDir))) "checkpoints/last kept (the executor writes done.json, then removes it)"
            use m2 = microModel 28L
            let r = Trainer.Run(m2, ByteTokenizer.Instance, objective (), config 12, dir, null, quiet)
            Expect.equal r.ResumedFrom 8L "a caller killed before recording resumes from step 8, not 0"

        testCase "a corrupt trainer_state.json is an error naming it" <| fun _ ->
            let dir = tempDir "corrupt-state"
            use m = microModel 29L
            let cut = killedAtStep5 ()
            Expect.throws (fun () -> Trainer.Run(m, ByteTokenizer.Instance, cut, config 12, dir, null, quiet) |> ignore) "interrupted"
            let state = Path.Combine(dir, Trainer.LastDir, TrainCheckpoint.StateFile)
            for text in [ "{\"step\": 4, \"tok"; "[1, 2]"; "{\"step\": \"four\"}" ] do
                File.WriteAllText(state, text)
                throwsWith<InvalidDataException> (fun () -> Trainer.Run(m, ByteTokenizer.Instance, objective (), config 12, dir, null, quiet) |> ignore)
                    [ TrainCheckpoint.StateFile; "corrupt" ] text

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
