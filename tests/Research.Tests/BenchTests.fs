module Research.Tests.BenchTests

open System
open System.Text.Json
open Expecto
open Research.Bench
open Research.Models

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

        testCase "the smallest bench runs and every number is finite and positive" <| fun _ ->
            let r = Benchmarks.Run(BenchOptions.Smallest)
            let json = JsonSerializer.Serialize(r, Research.Cli.Commands.BenchCommand.Json)
            use doc = JsonDocument.Parse json
            let root = doc.RootElement
            for key in [ "loop_ratio"; "mfu"; "optimizer_share"; "merge_bandwidth_ratio"; "bf16_matmul_speedup"
                         "bf16_forward_backward_speedup"; "packing_mb_per_s"; "eval_sequences_per_s"; "bf16_speedup"; "bf16_loss_gap"; "merge_peak_memory_ratio" ] do
                finitePositive key (root.GetProperty(key).GetDouble())
            // rss_growth can be zero or negative when nothing leaks; it must be a finite number
            Expect.isTrue (Double.IsFinite(root.GetProperty("rss_growth").GetDouble())) "rss_growth is finite"
            finitePositive "cores" (float (root.GetProperty("machine").GetProperty("cores").GetInt32()))
            finitePositive "torch threads" (float (root.GetProperty("machine").GetProperty("torch_threads").GetInt32()))
            let s = r.Sizes |> Seq.exactlyOne
            for name, x in [ "ours tok/s", s.OurTokensPerS; "hand tok/s", s.HandTokensPerS; "sgemm", s.SgemmFlopsPerS
                             "flops/token", s.FlopsPerToken; "hand mfu", s.HandMfu; "merge B/s", r.Merge.MergeBytesPerS
                             "file copy B/s", r.Merge.FileCopyBytesPerS; "memcpy B/s", r.Merge.MemoryCopyBytesPerS ] do
                finitePositive name x
            Expect.isLessThan s.OptimizerShare 1.0 "the optimizer is part of a step"
    ]
