using System.Text.Json;
using System.Text.Json.Serialization;
using Research.Bench;

namespace Research.Cli.Commands;

/// <summary>
/// research bench [--json] [--quick] [--device D]: measures the training loop against a hand-written TorchSharp loop,
/// mfu, optimizer share, memory growth, merge bandwidth, bf16, packing and evaluation rates (see docs/benchmarks.md).
/// --quick: the tiny model only, a few steps (about a minute). Default: tiny, small and d_model 512 (several minutes).
/// --steps N overrides the timed steps per round, --rss-steps N the steps between the memory readings.
/// --vocab-memory: the peak memory of a 150k-vocabulary loss instead (<see cref="VocabMemoryCommand"/>).
/// </summary>
public static class BenchCommand
{
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = false,
    };

    /// <summary>bench's options, --vocab-memory's included.</summary>
    public static readonly string[] Options = ["steps", "rss-steps", "device", "seq", "batch", "loss-chunk-rows"];

    public static int Execute(CliArgs a)
    {
        if (a.Flags.Contains("vocab-memory")) return VocabMemoryCommand.Execute(a);
        var o = a.Flags.Contains("quick") ? BenchOptions.Quick : BenchOptions.Full;
        o = o with { Steps = a.GetInt("steps", o.Steps), RssSteps = a.GetInt("rss-steps", o.RssSteps) };
        if (o.Steps <= 0 || o.RssSteps <= 0) throw new CliException("--steps and --rss-steps must be positive");
        var device = Research.Backend.Devices.Choose(a.Get("device"));
        var json = a.Flags.Contains("json");
        var report = Benchmarks.Run(o, device, json ? Console.Error : Console.Out);
        if (json) Console.WriteLine(JsonSerializer.Serialize(report, Json));
        else Print(report);
        return 0;
    }

    static void Print(BenchReport r)
    {
        var m = r.Machine;
        Console.WriteLine($"machine: {m.Cores} cores, torch threads {m.TorchThreads}, device {m.Device}, {m.Os}, {m.Runtime}");
        Console.WriteLine($"{"size",-6} {"params",8} {"ours tok/s",11} {"hand tok/s",11} {"loop_ratio",10} {"GFLOP/tok",9} {"sgemm GF/s",10} {"mfu",6} {"hand mfu",8} {"opt share",9} {"bf16 mm",7} {"bf16 f+b",8} {"eval seq/s",10}");
        foreach (var s in r.Sizes)
            Console.WriteLine($"{s.Name,-6} {s.Parameters / 1e6,7:F2}M {s.OurTokensPerS,11:F0} {s.HandTokensPerS,11:F0} {s.LoopRatio,10:F3} {s.FlopsPerToken / 1e9,9:F4} {s.SgemmFlopsPerS / 1e9,10:F1} {s.Mfu,6:F3} {s.HandMfu,8:F3} {s.OptimizerShare,9:P1} {s.Bf16MatmulSpeedup,7:F2} {s.Bf16ForwardBackwardSpeedup,8:F2} {s.EvalSequencesPerS,10:F1}");
        Console.WriteLine($"rss_growth: {r.Rss.RssGrowth:P2} over {r.Rss.Steps} steps ({r.Rss.RssAfterWarmupBytes / 1e6:F0} MB -> {r.Rss.RssAfterStepsBytes / 1e6:F0} MB)");
        Console.WriteLine($"merge: {r.Merge.MergeBytesPerS / 1e6:F0} MB/s vs memory copy {r.Merge.MemoryCopyBytesPerS / 1e6:F0} MB/s (merge_bandwidth_ratio {r.Merge.MergeBandwidthRatio:F3}) and file copy {r.Merge.FileCopyBytesPerS / 1e6:F0} MB/s ({r.Merge.FileCopyRatio:F3}); output in /dev/shm {r.Merge.MemoryFsMergeBytesPerS / 1e6:F0} MB/s ({r.Merge.MemoryFsMergeBytesPerS / r.Merge.MemoryCopyBytesPerS:F3} of memory copy); checkpoint {r.Merge.CheckpointBytes / 1e6:F1} MB");
        if (r.MergeMemory is { Count: > 0 } mms)
        {
            var first = mms[0];
            Console.WriteLine($"merge_peak_memory_ratio: {r.MergePeakMemoryRatio:F3} (the largest of {mms.Count} methods: peak anonymous RSS growth / (largest tensor {first.LargestTensorBytes / 1e6:F2} MB + output shard); two {first.ModelBytes / 1e6:F0} MB models, {first.Shards} output shards; bound 1.5)");
            foreach (var mm in mms)
                Console.WriteLine($"  {mm.Method,-16} {mm.Ratio,6:F3}  growth {mm.PeakAnonGrowthBytes / 1e6,6:F1} MB  shard {mm.OutputShardBytes / 1e6,5:F1} MB  {mm.Verdict}");
        }
        Console.WriteLine($"packing (byte tokenizer): {r.Packing.ByteTokenizerMbPerS:F1} MB/s over {r.Packing.Bytes / 1e6:F2} MB");
        Console.WriteLine($"bf16 training ({r.Bf16Size}): {r.Bf16Speedup:F2}x the float32 tokens/s; largest loss gap {r.Bf16LossGap:P2}");
        Console.WriteLine($"({r.Seconds:F0} s; top-level numbers are the '{r.Reference}' size's)");
    }
}
