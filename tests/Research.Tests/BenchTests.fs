module Research.Tests.BenchTests

open System
open System.Text.Json
open Expecto
open Research.Bench
open Research.Models
open Research.Tests.TestUtil

let private finitePositive (what: string) (x: float) =
    Expect.isTrue (Double.IsFinite x && x > 0.0) $"{what} is finite and positive (got {x})"

[<Tests>]
let tests =
    // Sequenced: the process's RSS and the cores, which the benchmarks measure.
    testSequenced <| testList "Bench" [
        testCase "FLOPs per token are nanoGPT's 6N + 12 L d T" <| fun _ ->
            let c = ModelConfig(VocabSize = 259, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 3,
                                NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 128)
            // by hand: 6 * 100000 + 12 * 3 layers * 64 * 128 tokens = 600000 + 294912
            Expect.equal (Benchmarks.FlopsPerToken(c, 100000L, 128)) 894912.0 "flops per token"
            use model = new CausalLM(c, 1L)
            // tied embedding: it is the LM head's matmul, so every parameter counts
            let perLayer = 64L * 64L + 2L * 64L * 32L + 64L * 64L + 3L * 64L * 128L + 2L * 64L
            Expect.equal (Benchmarks.MatmulParameters model) (259L * 64L + 3L * perLayer + 64L) "matmul parameters"

        testCase "a budget runs the minimum, then stops once spent, and says it cut the measurement short" <| fun _ ->
            let spent = Budget("spent", 0.0)
            let ran = Seq.initInfinite id |> Seq.takeWhile (fun i -> spent.Another(i, 10, 2)) |> Seq.length
            Expect.equal ran 2 "the minimum only"
            Expect.isTrue (spent.Use().CutShort) "cut short"
            let ample = Budget("ample", 3600.0)
            let all = Seq.initInfinite id |> Seq.takeWhile (fun i -> ample.Another(i, 3)) |> Seq.length
            Expect.equal all 3 "every iteration asked for"
            Expect.isFalse (ample.Use().CutShort) "not cut"

        testCase "the smallest bench runs and every number is finite and positive; the JSON says which CPU, threads and load" <| fun _ ->
            let r = Benchmarks.Run(BenchOptions.Smallest)
            let json = JsonSerializer.Serialize(r, Research.Cli.Commands.BenchCommand.Json)
            use doc = JsonDocument.Parse json
            let root = doc.RootElement
            // bf16 is measured here whatever the CPU (Bf16Measure.Always, forced), so its numbers exist too
            for key in [ "loop_ratio"; "mfu"; "optimizer_share"; "merge_bandwidth_ratio"; "bf16_matmul_speedup"
                         "bf16_forward_backward_speedup"; "packing_mb_per_s"; "eval_sequences_per_s"; "bf16_speedup"; "bf16_loss_gap" ] do
                finitePositive key (root.GetProperty(key).GetDouble())
            // In this process, after the other lists have run, the merge can reuse pages the allocator already holds, so its
            // anonymous RSS growth (and the ratio) can be 0; `research bench` measures it in a fresh process, and
            // Merge.memory checks the bound itself.
            let peak = root.GetProperty("merge_peak_memory_ratio").GetDouble()
            Expect.isTrue (Double.IsFinite peak && peak >= 0.0) $"merge_peak_memory_ratio is finite and not negative (got {peak})"
            // rss_growth can be zero or negative when nothing leaks; it must be a finite number
            Expect.isTrue (Double.IsFinite(root.GetProperty("rss_growth").GetDouble())) "rss_growth is finite"
            let machine = root.GetProperty "machine"
            finitePositive "cores" (float (machine.GetProperty("cores").GetInt32()))
            finitePositive "torch threads" (float (machine.GetProperty("torch_threads").GetInt32()))
            Expect.isNonEmpty (machine.GetProperty("cpu_model").GetString()) "cpu model"
            Expect.isGreaterThan (machine.GetProperty("cpu_flags").GetArrayLength()) 0 "cpu flags"
            Expect.equal (machine.GetProperty("load_average").GetArrayLength()) 3 "load average at start: 1, 5, 15 minutes"
            let bf16 = root.GetProperty "bf16"
            Expect.equal (bf16.GetProperty("native").GetBoolean()) Research.Backend.Bf16Support.ThisCpu.Native "bf16 support as detected"
            Expect.isTrue (bf16.GetProperty("measured").GetBoolean()) "measured (Always)"
            finitePositive "bf16 probe" (bf16.GetProperty("probe_speedup").GetDouble())
            Expect.isGreaterThan (root.GetProperty("budgets").GetArrayLength()) 0 "every budgeted measurement is listed"
            let s = r.Sizes |> Seq.exactlyOne
            for name, x in [ "ours tok/s", s.OurTokensPerS; "hand tok/s", s.HandTokensPerS; "sgemm", s.SgemmFlopsPerS
                             "flops/token", s.FlopsPerToken; "hand mfu", s.HandMfu; "merge B/s", r.Merge.MergeBytesPerS
                             "durable copy B/s", r.Merge.DurableCopyBytesPerS; "file copy B/s", r.Merge.FileCopyBytesPerS
                             "memcpy B/s", r.Merge.MemoryCopyBytesPerS ] do
                finitePositive name x
            Expect.isLessThan s.OptimizerShare 1.0 "the optimizer is part of a step"
            let o = r.Online |> Seq.exactlyOne
            for name, x in [ "rollout tok/s, cached", o.CachedTokensPerS; "rollout tok/s, uncached", o.UncachedTokensPerS; "grpo tok/s", o.GrpoTokensPerS
                             "rollout share", o.RolloutShare ] do
                finitePositive name x
            Expect.isLessThan o.RolloutShare 1.0 "rollouts are part of a grpo step"
            Expect.isTrue (Double.IsNaN s.PeerTokensPerS) "no peer asked for: NaN, not a number made up"

        testCase "bf16 is measured where native (or when asked always), else reported as not measured with the reason" <| fun _ ->
            let none = Research.Backend.Bf16Support(false, "AMD EPYC: no native bf16")
            let native = Research.Backend.Bf16Support(true, "Xeon: CPU flag amx_bf16")
            let skipped = Benchmarks.Bf16Plan(Bf16Measure.WhereNative, none, 0.03)
            Expect.isFalse skipped.Measured "not measured without native bf16"
            Expect.equal skipped.Reason "AMD EPYC: no native bf16" "the reason"
            Expect.equal skipped.ProbeSpeedup 0.03 "the probe's measured slowdown"
            Expect.isTrue (Benchmarks.Bf16Plan(Bf16Measure.WhereNative, native, 2.0)).Measured "native"
            Expect.isTrue (Benchmarks.Bf16Plan(Bf16Measure.Always, none, 0.03)).Measured "asked for always"

        testCase "the PyTorch peer builds the same model (parameter count) and times rounds of steps" <| fun _ ->
            ensurePythonRefs.Force()
            let size = BenchSizes.Micro
            let train = Research.Training.TrainConfig(BatchSize = size.BatchSize)
            let mutable reason = null
            use peer = PeerLoop.Start(PeerLoop.Config(size, train, 1, 1), &reason)
            Expect.isNotNull peer $"the peer started ({reason})"
            use ours = new CausalLM(size.Model, 1L)
            Expect.equal peer.Info.Parameters (ours.ParameterCount()) "same parameters"
            Expect.stringContains peer.Info.Blas "blas" "says which BLAS it mapped"
            finitePositive "peer round seconds" (peer.Round 2)

        testCase "a Qwen3-shaped LoRA step and generation run in-process on a tiny stand-in (structure, not speed)" <| fun _ ->
            let c = ModelConfig(VocabSize = 300, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 4,
                                NumKeyValueHeads = 2, MaxPositionEmbeddings = 64)
            let lora = RealShape.Run("lora-chunked", c, 1, 16, TorchSharp.torch.CPU)
            Expect.isGreaterThan lora.TrainableParameters 0L "adapters train"
            Expect.isLessThan lora.TrainableParameters lora.Parameters "only adapters"
            Expect.equal lora.StateBytes (4L * lora.Parameters + 16L * lora.TrainableParameters) "LoRA's implied bytes"
            finitePositive "lora tok/s" lora.TokensPerS
            Expect.isGreaterThanOrEqual lora.PeakRssBytes lora.RssAfterModelBytes "peak at least the model's RSS"
            let gen = RealShape.Run("generate", c, 1, 16, TorchSharp.torch.CPU, 4)
            finitePositive "generation tok/s" gen.TokensPerS
            Expect.stringContains gen.Note "4 new tokens" "counts the new tokens, not the prompt"
    ]
