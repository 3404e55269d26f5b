/// LoRA: adapter counts and init, the update against hand-computed values, frozen base, merge, the PEFT files, a LoRA stage.
module Research.Tests.LoraTests

open System
open System.IO
open System.Text.Json.Nodes
open Expecto
open TorchSharp
open TorchSharp.Modules
open Research
open Research.Data
open Research.Models
open Research.Pipelines
open Research.Stages
open Research.Training
open Research.Tests.TestUtil

let private all7 = [| "q_proj"; "k_proj"; "v_proj"; "o_proj"; "gate_proj"; "up_proj"; "down_proj" |]

let private tokens = ids [ 256L; 72L; 101L; 108L; 108L; 111L; 44L; 32L; 119L; 111L; 114L; 108L; 100L ]

/// Logits of the fixed tokens in eval mode (no adapter dropout).
let private logits (m: CausalLM) =
    use _ = torch.no_grad()
    m.eval()
    m.Forward(tokens)

let private snapshot (m: CausalLM) =
    [ for struct (n, p) in m.named_parameters() -> n, p.detach().clone() ]

/// Bit-exact equality of two tensors.
let private same (a: torch.Tensor) (b: torch.Tensor) = a.shape = b.shape && maxAbsDiff a b = 0.0

let private linear (m: CausalLM) (name: string) =
    m.named_modules() |> Seq.pick (fun struct (n, md) -> if n = name then Some (md :?> Linear) else None)

/// A few AdamW steps of next-token loss on the fixed tokens, through the adapter only.
let private trainAdapter (m: CausalLM) (adapter: LoraAdapter) (steps: int) =
    use opt = new AdamW(adapter.NamedParameters())
    let cfg = TrainConfig(WeightDecay = 0.0)
    m.train()
    for _ in 1 .. steps do
        use scope = torch.NewDisposeScope()
        opt.ZeroGrad()
        let lg = m.Forward(tokens.narrow(1L, 0L, 12L))
        let loss = TokenLoss.SummedCrossEntropy(lg, tokens.narrow(1L, 1L, 12L))
        loss.backward()
        opt.Step(1e-2, cfg)
    m.eval()

/// A tune objective on random byte sequences (every token trained): something to fit, no files.
let private randomTune (train: TrainConfig) =
    let rng = Rng(3L)
    let seqs = [| for _ in 1 .. 16 -> SftTokens([| yield ByteTokenizer.Bos; for _ in 1 .. 20 -> rng.NextInt 256 |], Array.create 21 true) |]
    TuneObjective(seqs, TuneOptions(BlockLength = 32, Packing = false, Train = train), "random")

let private metricsWithoutTime path =
    Research.Runs.MetricsLog.Read path
    |> Seq.map (fun o ->
        for f in Research.Runs.MetricsLog.TimeFields do o.Remove f |> ignore
        o.ToJsonString())
    |> List.ofSeq

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "Lora" [
        testCase "trainable count = sum over targeted linears of r (in + out); the base is frozen, then released" <| fun _ ->
            use m = microModel 1L
            // micro: hidden 32, 4 heads of 8, 2 kv heads (k, v: 16 out), intermediate 64, 2 layers.
            // r = 4 on all seven: q 4·64 + k 4·48 + v 4·48 + o 4·64 + gate 4·96 + up 4·96 + down 4·96 = 2048 per layer.
            use a = LoraAdapter.Attach(m, LoraOptions(Rank = 4, Alpha = 8.0, TargetModules = all7), 1L)
            Expect.equal a.TrainableCount 4096L "2 layers x 2048"
            Expect.equal a.Layers.Count 14 "7 linears x 2 layers"
            Expect.isTrue (m.parameters() |> Seq.forall (fun p -> not p.requires_grad)) "every base parameter frozen"
            Expect.isTrue (a.NamedParameters() |> Seq.forall (fun struct (_, p) -> p.requires_grad)) "adapters trainable"
            a.Detach()
            Expect.isTrue (m.parameters() |> Seq.forall (fun p -> p.requires_grad)) "detaching restores the base's trainability"
            // PEFT's default targets for Llama (q, v), r = 2: (2·64 + 2·48) per layer.
            use m2 = microModel 1L
            use d = LoraAdapter.Attach(m2, LoraOptions(Rank = 2), 1L)
            Expect.equal d.TrainableCount 448L "2 layers x (128 + 96)"
            throwsWith<ArgumentException> (fun () -> LoraOptions(TargetModules = [| "qkv" |]).Validate() |> ignore) [ "qkv"; "q_proj" ] "unknown target"
            throwsWith<ArgumentException> (fun () -> LoraOptions(Rank = 0).Validate() |> ignore) [ "rank" ] "rank 0"

        testCase "B = 0 at init, so the adapted logits equal the base's exactly; A is seeded and bounded by 1/sqrt(in)" <| fun _ ->
            use m = microModel 2L
            use before = logits m
            use a = LoraAdapter.Attach(m, LoraOptions(Rank = 4, TargetModules = all7), 7L)
            use after = logits m
            Expect.isTrue (same before after) "bit-exact"
            for l in a.Layers do
                Expect.equal (l.B.abs().sum().item<float32>()) 0.0f $"{l.Module}: B zero"
                let bound = 1.0 / sqrt (float l.A.shape[1])
                Expect.isLessThanOrEqual (l.A.abs().max().item<float32>() |> float) bound $"{l.Module}: |A| <= 1/sqrt(in)"
            use m2 = microModel 2L
            use a2 = LoraAdapter.Attach(m2, LoraOptions(Rank = 4, TargetModules = all7), 7L)
            Expect.isTrue (Seq.forall2 (fun (x: LoraLayer) (y: LoraLayer) -> same x.A y.A) a.Layers a2.Layers) "same seed, same A"
            use m3 = microModel 2L
            use a3 = LoraAdapter.Attach(m3, LoraOptions(Rank = 4, TargetModules = all7), 8L)
            Expect.isFalse (same (a.Layers[0].A) (a3.Layers[0].A)) "another seed, another A"

        testCase "the update is (alpha / r) B A x, on hand-computed values" <| fun _ ->
            use m = microModel 3L
            use a = LoraAdapter.Attach(m, LoraOptions(Rank = 1, Alpha = 2.0, TargetModules = [| "q_proj" |]), 1L)
            let layer = a.Layers |> Seq.find (fun l -> l.Module = "model.layers.0.self_attn.q_proj")
            use _ = torch.no_grad()
            layer.A.fill_(0.1) |> ignore                                              // A = 0.1 everywhere: A x = 3.2 for x = ones(32)
            layer.B.copy_(torch.arange(32, dtype = torch.float32).div(torch.tensor(32.0f)).view(32L, 1L)) |> ignore   // B_j = j / 32
            let q = linear m "model.layers.0.self_attn.q_proj"
            use x = torch.ones(1L, 32L)
            use delta = Lora.Forward(q, x) - q.forward(x)
            // scaling 2 / 1 = 2: delta_j = 2 · (j / 32) · 3.2 = 0.2 j
            use expected = torch.arange(32, dtype = torch.float32).mul(torch.tensor(0.2f)).view(1L, 32L)
            Expect.isLessThan (maxAbsDiff delta expected) 1e-5 "0.2 j"
            use k = linear m "model.layers.0.self_attn.k_proj" |> fun l -> Lora.Forward(l, x) - l.forward(x)
            Expect.equal (k.abs().sum().item<float32>()) 0.0f "an untargeted linear is unchanged"

        testCase "training moves only the adapters: base bit-exact; merged logits equal the adapted ones (1e-5)" <| fun _ ->
            use m = microModel 4L
            let base0 = snapshot m
            use a = LoraAdapter.Attach(m, LoraOptions(Rank = 4, Alpha = 8.0, Dropout = 0.1, TargetModules = all7), 4L)
            use l0 = logits m
            trainAdapter m a 5
            for ((n, p0), struct (_, p)) in Seq.zip base0 (m.named_parameters()) do
                Expect.isTrue (same p0 p) $"{n} unchanged"
            Expect.isTrue (a.Layers |> Seq.forall (fun l -> l.B.abs().sum().item<float32>() > 0.0f)) "every B moved"
            use adapted = logits m
            Expect.isGreaterThan (maxAbsDiff adapted l0) 1e-3 "the adapted model computes something else"
            a.MergeAndDetach()
            use merged = logits m
            let diff = maxAbsDiff merged adapted
            printfn $"lora merge: max |merged - adapted| logit = {diff:E2}"
            Expect.isLessThan diff 1e-5 "merged = adapted"
            let changed = [ for ((n, p0), struct (_, p)) in Seq.zip base0 (m.named_parameters()) do if not (same p0 p) then n ]
            Expect.equal changed.Length 14 "merge changed exactly the 14 adapted weights"
            Expect.isTrue (changed |> List.forall (fun n -> all7 |> Array.exists (fun t -> n.EndsWith($"{t}.weight")))) "only targeted linears"

        testCase "the PEFT layout round-trips: keys, shapes, adapter_config.json; bad files are named" <| fun _ ->
            let dir = tempDir "lora-peft"
            use m = microModel 5L
            use a = LoraAdapter.Attach(m, LoraOptions(Rank = 2, Alpha = 4.0, Dropout = 0.05, TargetModules = [| "v_proj"; "down_proj" |]), 5L)
            trainAdapter m a 3
            use adapted = logits m
            let out = Path.Combine(dir, "adapter")
            a.Save(out, "parent-ckpt")
            let st = Safetensors.Load(Path.Combine(out, LoraAdapter.WeightsFile))
            let shape (k: string) = List.ofArray st[k].shape
            Expect.equal (st.Keys |> Seq.sort |> List.ofSeq)
                [ for l in 0 .. 1 do
                    for k in [ $"mlp.down_proj"; $"self_attn.v_proj" ] do
                        for ab in [ "A"; "B" ] -> $"base_model.model.model.layers.{l}.{k}.lora_{ab}.weight" ] "PEFT keys"
            Expect.equal (shape "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight") [ 2L; 32L ] "A: (r, in)"
            Expect.equal (shape "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight") [ 16L; 2L ] "B: (out, r)"
            Expect.equal (shape "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight") [ 2L; 64L ] "down A"
            for t in st.Values do t.Dispose()
            let cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(out, LoraAdapter.ConfigFile)))
            Expect.equal (cfg["peft_type"].GetValue<string>()) "LORA" "peft_type"
            Expect.equal (cfg["r"].GetValue<int>()) 2 "r"
            Expect.equal (cfg["lora_alpha"].GetValue<float>()) 4.0 "alpha"
            Expect.equal (cfg["lora_dropout"].GetValue<float>()) 0.05 "dropout"
            Expect.equal [ for t in cfg["target_modules"].AsArray() -> t.GetValue<string>() ] [ "down_proj"; "v_proj" ] "targets"
            Expect.equal (cfg["base_model_name_or_path"].GetValue<string>()) "parent-ckpt" "base"
            // Back onto a fresh base: the same function.
            use fresh = microModel 5L
            use b = LoraAdapter.Load(fresh, out)
            use loaded = logits fresh
            Expect.isTrue (same loaded adapted) "loaded adapter = trained adapter"
            // Bad input.
            use other = microModel 5L
            let wrongRank = Path.Combine(dir, "wrong-rank")
            Directory.CreateDirectory wrongRank |> ignore
            File.Copy(Path.Combine(out, LoraAdapter.WeightsFile), Path.Combine(wrongRank, LoraAdapter.WeightsFile))
            File.WriteAllText(Path.Combine(wrongRank, LoraAdapter.ConfigFile), File.ReadAllText(Path.Combine(out, LoraAdapter.ConfigFile)).Replace("\"r\": 2", "\"r\": 3"))
            throwsWith<InvalidDataException> (fun () -> LoraAdapter.Load(other, wrongRank) |> ignore) [ LoraAdapter.WeightsFile; "lora_A.weight"; "r = 3" ] "rank mismatch"
            use other2 = microModel 5L
            let noR = Path.Combine(dir, "no-r")
            Directory.CreateDirectory noR |> ignore
            File.WriteAllText(Path.Combine(noR, LoraAdapter.ConfigFile), """{"peft_type": "LORA", "lora_alpha": 8, "target_modules": ["q_proj"]}""")
            throwsWith<InvalidDataException> (fun () -> LoraAdapter.Load(other2, noR) |> ignore) [ LoraAdapter.ConfigFile; "'r'" ] "missing r"
            throwsWith<FileNotFoundException> (fun () -> LoraAdapter.Load(other2, Path.Combine(dir, "none")) |> ignore) [ LoraAdapter.ConfigFile ] "no adapter"

        testCase "a LoRA tune stage through the Executor: adapter/ + merged final/, only targeted weights differ, LoRA in the key" <| fun _ ->
            let ws = tempDir "lora-stage"
            let parentDir = Path.Combine(ws, "parent")
            (use m = microModel 6L in Checkpoint.Save(parentDir, m, ByteTokenizer.Instance))
            let data = Path.Combine(ws, "sft.jsonl")
            File.WriteAllLines(data, [ for i in 1 .. 16 -> $"{{\"prompt\": \"Q{i}: \", \"completion\": \"A{i}\"}}" ])
            let options = lora 4 8.0 |> loraTargets [ "q_proj"; "up_proj" ]
            let quick (s: Step) = s |> Stage.steps 6 |> Stage.lr 1e-2 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
            let e = Experiment.create "lora" (fromCheckpoint parentDir) (quick (tune data) |> Stage.lora options) |> Experiment.seed 3L
            let full = Experiment.create "lora" (fromCheckpoint parentDir) (quick (tune data)) |> Experiment.seed 3L
            let key (x: Experiment) = Executor.Key(x.Points[0].Leaves[0], x.Seed)
            Expect.notEqual (key e) (key full) "LoRA enters the stage's key"
            let r = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e
            let node = r.Runs[0].Node("tune")
            Expect.equal node.Status "done" "ran"
            let adapterDir = Path.Combine(node.Directory, Trainer.AdapterDir)
            Expect.isTrue (File.Exists(Path.Combine(adapterDir, LoraAdapter.WeightsFile))) "adapter weights"
            Expect.equal (LoraAdapter.ReadConfig(Path.Combine(adapterDir, LoraAdapter.ConfigFile)).TargetModules |> Array.sort) [| "q_proj"; "up_proj" |] "adapter config"
            let p0 = Safetensors.Load(Path.Combine(parentDir, Checkpoint.WeightsFile))
            let p1 = Safetensors.Load(Path.Combine(node.Checkpoint, Checkpoint.WeightsFile))
            let changed = [ for k in p0.Keys |> Seq.sort do if not (same (p0[k]) (p1[k])) then k ]
            Expect.equal changed
                [ "model.layers.0.mlp.up_proj.weight"; "model.layers.0.self_attn.q_proj.weight"
                  "model.layers.1.mlp.up_proj.weight"; "model.layers.1.self_attn.q_proj.weight" ] "final/ = parent + merged updates on the targets only"
            // final/ = parent + the saved adapter, merged.
            let struct (viaAdapter, _) = Checkpoint.Load parentDir
            use viaAdapter = viaAdapter
            use ad = LoraAdapter.Load(viaAdapter, adapterDir)
            let struct (merged, _) = Checkpoint.Load node.Checkpoint
            use merged = merged
            use l1 = logits viaAdapter
            use l2 = logits merged
            Expect.isLessThan (maxAbsDiff l1 l2) 1e-5 "parent + adapter = final"
            for t in Seq.append p0.Values p1.Values do t.Dispose()
            let again = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e
            Expect.equal (again.Runs[0].Node("tune").Status) "cached" "cached on the second run"
        testCase "a LoRA run resumes from its checkpoint (adapters, moments, dropout RNG) to the uninterrupted result" <| fun _ ->
            let cfg = TrainConfig(Steps = 12, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 2, LogEvery = 2, EvalEvery = 0, CheckpointEvery = 4, Seed = 5L,
                                  Lora = LoraOptions(Rank = 2, Alpha = 4.0, Dropout = 0.2, TargetModules = all7))
            let full = tempDir "lora-full"
            use m1 = microModel 23L
            let r1 = Trainer.Run(m1, ByteTokenizer.Instance, randomTune cfg, cfg, full, null, TextWriter.Null)
            Expect.isTrue (File.Exists(Path.Combine(full, Trainer.AdapterDir, LoraAdapter.WeightsFile))) "adapter written"
            let cut = tempDir "lora-cut"
            use m2 = microModel 23L
            let inner = randomTune cfg
            let stopAt8 = { new IObjective<SftBatch> with
                              member _.Kind = inner.Kind
                              member _.Fingerprint = inner.Fingerprint
                              member _.Batch(step, micro, c, dev) = if step >= 9L then failwith "killed" else inner.Batch(step, micro, c, dev)
                              member _.Loss(model, b, sink) = inner.Loss(model, b, sink) }
            Expect.throws (fun () -> Trainer.Run(m2, ByteTokenizer.Instance, stopAt8, cfg, cut, null, TextWriter.Null) |> ignore) "interrupted"
            let last = Path.Combine(cut, Trainer.LastDir)
            Expect.isTrue (File.Exists(Path.Combine(last, LoraAdapter.WeightsFile))) "the resumable checkpoint holds the adapter"
            use m3 = microModel 99L   // another init: the base comes from the checkpoint too
            let r3 = Trainer.Run(m3, ByteTokenizer.Instance, randomTune cfg, cfg, cut, null, TextWriter.Null)
            Expect.equal r3.ResumedFrom 8L "resumed from step 8"
            Expect.equal (metricsWithoutTime (Path.Combine(cut, Trainer.MetricsFile))) (metricsWithoutTime (Path.Combine(full, Trainer.MetricsFile))) "same metrics"
            for (struct (n, a)), (struct (_, b)) in Seq.zip (m1.named_parameters()) (m3.named_parameters()) do
                Expect.isTrue (same a b) $"{n}: same merged weights"
            use base0 = microModel 23L
            let changed = [ for (struct (n, a)), (struct (_, b)) in Seq.zip (m1.named_parameters()) (base0.named_parameters()) do if not (same a b) then n ]
            Expect.equal changed.Length 14 "the merged run moved the 14 adapted matrices"

        testCase "LoRA dropout draws from the adapter's own stream: torch's global RNG, reseeded and drawn from between steps, changes nothing" <| fun _ ->
            let cfg = TrainConfig(Steps = 6, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 1, LogEvery = 1, EvalEvery = 0, CheckpointEvery = 0, Seed = 5L,
                                  Lora = LoraOptions(Rank = 2, Alpha = 4.0, Dropout = 0.3, TargetModules = all7))
            let quiet = tempDir "lora-quiet"
            use m1 = microModel 23L
            Trainer.Run(m1, ByteTokenizer.Instance, randomTune cfg, cfg, quiet, null, TextWriter.Null) |> ignore
            // Another training in the same process, as a parallel test or a notebook's second cell would be: it reseeds
            // and draws from the global generator before every batch.
            let inner = randomTune cfg
            let noisy = { new IObjective<SftBatch> with
                              member _.Kind = inner.Kind
                              member _.Fingerprint = inner.Fingerprint
                              member _.Batch(step, micro, c, dev) =
                                  torch.manual_seed(1000L + step) |> ignore
                                  (torch.rand(1000L)).Dispose()
                                  inner.Batch(step, micro, c, dev)
                              member _.Loss(model, b, sink) = inner.Loss(model, b, sink) }
            let loud = tempDir "lora-loud"
            use m2 = microModel 23L
            Trainer.Run(m2, ByteTokenizer.Instance, noisy, cfg, loud, null, TextWriter.Null) |> ignore
            Expect.equal (metricsWithoutTime (Path.Combine(loud, Trainer.MetricsFile))) (metricsWithoutTime (Path.Combine(quiet, Trainer.MetricsFile))) "same metrics"
            for (struct (n, a)), (struct (_, b)) in Seq.zip (m1.named_parameters()) (m2.named_parameters()) do
                Expect.isTrue (same a b) $"{n}: same merged weights"
    ]
