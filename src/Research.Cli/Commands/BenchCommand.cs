using System.Diagnostics;
using System.Text.Json;
using Research.Bench;

namespace Research.Cli.Commands;

/// <summary>
/// research bench [--json] [--quick] [--no-peer] [--bf16 always] [--device D]: measures the training loop against a hand-written
/// TorchSharp loop and PyTorch eager, mfu, optimizer share, memory growth, merge bandwidth against a durable copy, bf16 (where
/// native), packing, evaluation, and the Qwen3-0.6B shape (each mode in a process of its own; see docs/benchmarks.md).
/// --quick: under two minutes on two cores. Default: under ten. --steps N overrides the timed steps per round, --rss-steps N
/// the steps between the memory readings. --real-shape MODE [--layers N]: one real-shape measurement in this process (what the
/// bench runs as a child). --vocab-memory: the peak memory of a 150k-vocabulary loss instead (<see cref="VocabMemoryCommand"/>).
/// </summary>
public static class BenchCommand
{
    public static JsonSerializerOptions Json => BenchJson.Options;

    /// <summary>bench's options, --vocab-memory's and --real-shape's included.</summary>
    public static readonly string[] Options = ["steps", "rss-steps", "device", "seq", "batch", "loss-chunk-rows", "bf16", "real-shape", "layers"];

    public static int Execute(CliArgs a)
    {
        if (a.Flags.Contains("vocab-memory")) return VocabMemoryCommand.Execute(a);
        var device = Research.Backend.Devices.Choose(a.Get("device"));
        if (a.Get("real-shape") is { } mode)
        {
            var r = RealShape.Run(mode, RealShape.Config(a.GetInt("layers", 28)), a.GetInt("batch", 1), a.GetInt("seq", 512), device);
            Console.WriteLine(JsonSerializer.Serialize(r, Json));
            return 0;
        }
        var o = a.Flags.Contains("quick") ? BenchOptions.Quick : BenchOptions.Full;
        o = o with { Steps = a.GetInt("steps", o.Steps), RssSteps = a.GetInt("rss-steps", o.RssSteps), Peer = !a.Flags.Contains("no-peer") };
        if (o.Steps <= 0 || o.RssSteps <= 0) throw new CliException("--steps and --rss-steps must be positive");
        o = a.Get("bf16") switch
        {
            null or "where-native" => o,
            "always" => o with { Bf16 = Bf16Measure.Always },
            var v => throw new CliException($"--bf16 must be where-native (the default) or always (got '{v}')"),
        };
        var json = a.Flags.Contains("json");
        var log = json ? Console.Error : Console.Out;
        var clock = Stopwatch.StartNew();
        var report = Benchmarks.Run(o, device, log);
        var shapes = new List<RealShapeResult>();
        var budgets = report.Budgets.ToList();
        if (o.RealShapeLayers > 0)
            foreach (var m in RealShape.Modes)
            {
                var budget = new Budget($"qwen3 shape ({o.RealShapeLayers} layers): {m}", o.RealShapeSeconds);
                var (result, why) = Child(m, o.RealShapeLayers, a.Get("device"), o.RealShapeSeconds);
                if (result is not null)
                {
                    shapes.Add(result);
                    log.WriteLine($"qwen3 shape, {result.Layers} layers, {m}: {result.TokensPerS:F1} tok/s, peak RSS {result.PeakRssBytes / 1e9:F2} GB " +
                                  $"({result.PeakOverState:F2}x the {result.StateBytes / 1e9:F2} GB it implies)");
                }
                else log.WriteLine($"qwen3 shape, {m}: not measured: {why}");
                budgets.Add(budget.Use(why));
            }
        report = report with { RealShapes = shapes, Budgets = budgets, Seconds = clock.Elapsed.TotalSeconds };
        if (json) Console.WriteLine(JsonSerializer.Serialize(report, Json));
        else Print(report);
        return 0;
    }

    /// <summary>One real-shape mode in a fresh process (its VmHWM is its own), killed past <paramref name="seconds"/>.</summary>
    static (RealShapeResult? Result, string? Why) Child(string mode, int layers, string? device, double seconds)
    {
        var command = RunCommand.ResearchCommand();
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in command.Skip(1).Concat(["bench", "--real-shape", mode, "--layers", $"{layers}", "--seq", "512", "--batch", "1"]))
            psi.ArgumentList.Add(arg);
        if (device is not null) { psi.ArgumentList.Add("--device"); psi.ArgumentList.Add(device); }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{command[0]} did not start");
        var output = p.StandardOutput.ReadToEndAsync();
        var errors = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(seconds)))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return (null, $"past its budget of {seconds:F0} s (killed)");
        }
        if (p.ExitCode != 0) return (null, $"exited with {p.ExitCode}: {errors.Result.Trim().Split('\n').LastOrDefault()}");
        var line = output.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";
        return (JsonSerializer.Deserialize<RealShapeResult>(line, Json), null);
    }

    static string Na(double x, string format) => double.IsNaN(x) ? "n/a" : x.ToString(format, System.Globalization.CultureInfo.InvariantCulture);

    static void Print(BenchReport r)
    {
        var m = r.Machine;
        Console.WriteLine($"machine: {m.CpuModel}, {m.Cores} cores, torch threads {m.TorchThreads}, load average at start {string.Join(" ", m.LoadAverage ?? [])}, device {m.Device}, {m.Os}, {m.Runtime}");
        if (r.Bf16 is { } b)
            Console.WriteLine(b.Measured ? $"bf16: measured ({b.Reason})" : $"bf16: not applicable, not measured: {b.Reason} (probe: bf16 matmul at {b.ProbeSpeedup:F3}x float32)");
        if (r.Peer is { } peer)
            Console.WriteLine(peer.Info is { } i ? $"pytorch peer: torch {i.Torch}, BLAS {i.Blas}, attention {i.Attention}, {i.Optimizer}, {i.Threads} threads" : $"pytorch peer: not run: {peer.Reason}");
        Console.WriteLine($"{"size",-6} {"params",8} {"ours tok/s",11} {"hand tok/s",11} {"loop_ratio",10} {"torch tok/s",11} {"ours/torch",10} {"sgemm GF/s",10} {"mfu",6} {"hand mfu",8} {"opt share",9} {"bf16 mm",7} {"bf16 f+b",8} {"eval seq/s",10} {"rounds",6}");
        foreach (var s in r.Sizes)
            Console.WriteLine($"{s.Name,-6} {s.Parameters / 1e6,7:F2}M {s.OurTokensPerS,11:F0} {s.HandTokensPerS,11:F0} {s.LoopRatio,10:F3} {Na(s.PeerTokensPerS, "F0"),11} {Na(s.PeerRatio, "F2"),10} {s.SgemmFlopsPerS / 1e9,10:F1} {s.Mfu,6:F3} {s.HandMfu,8:F3} {s.OptimizerShare,9:P1} {Na(s.Bf16MatmulSpeedup, "F2"),7} {Na(s.Bf16ForwardBackwardSpeedup, "F2"),8} {s.EvalSequencesPerS,10:F1} {s.Rounds,6}");
        Console.WriteLine($"rss_growth: {r.Rss.RssGrowth:P2} over {r.Rss.Steps} steps ({r.Rss.RssAfterWarmupBytes / 1e6:F0} MB -> {r.Rss.RssAfterStepsBytes / 1e6:F0} MB)");
        var g = r.Merge;
        Console.WriteLine($"merge ({g.CheckpointBytes / 1e6:F0} MB checkpoints, {g.Rounds} rounds): {g.MergeBytesPerS / 1e6:F0} MB/s vs a durable copy {g.DurableCopyBytesPerS / 1e6:F0} MB/s: merge_bandwidth_ratio {g.MergeBandwidthRatio:F3} (goal 0.7); " +
                          $"information: memory copy {g.MemoryCopyBytesPerS / 1e6:F0} MB/s ({g.MemoryCopyRatio:F3}), File.Copy {g.FileCopyBytesPerS / 1e6:F0} MB/s ({g.FileCopyRatio:F3}), output in /dev/shm {g.MemoryFsMergeBytesPerS / 1e6:F0} MB/s");
        if (r.MergeMemory is { Count: > 0 } mms)
        {
            var first = mms[0];
            Console.WriteLine($"merge_peak_memory_ratio: {r.MergePeakMemoryRatio:F3} (the largest of {mms.Count} methods: peak anonymous RSS growth / (largest tensor {first.LargestTensorBytes / 1e6:F2} MB + output shard); two {first.ModelBytes / 1e6:F0} MB models, {first.Shards} output shards; bound 1.5)");
            foreach (var mm in mms)
                Console.WriteLine($"  {mm.Method,-16} {mm.Ratio,6:F3}  growth {mm.PeakAnonGrowthBytes / 1e6,6:F1} MB  shard {mm.OutputShardBytes / 1e6,5:F1} MB  {mm.Verdict}");
        }
        Console.WriteLine($"packing (byte tokenizer): {r.Packing.ByteTokenizerMbPerS:F1} MB/s over {r.Packing.Bytes / 1e6:F2} MB");
        Console.WriteLine($"bf16 training ({r.Bf16Size}): {Na(r.Bf16Speedup, "F2")}x the float32 tokens/s; largest loss gap {Na(r.Bf16LossGap * 100, "F2")}%");
        foreach (var o in r.Online)
            Console.WriteLine($"online ({o.Name}, {o.Parameters / 1e6:F2}M params, G {o.Completions}, {o.PromptTokens}-token prompt, {o.NewTokens} new tokens): rollouts {o.CachedTokensPerS:F0} tok/s " +
                              $"with the KV cache, {o.UncachedTokensPerS:F0} without ({o.CacheSpeedup:F1}x); grpo {o.GrpoTokensPerS:F0} tok/s, {o.GrpoStepSeconds:F2} s a step, {o.RolloutShare:P0} rollouts");
        foreach (var q in r.RealShapes)
            Console.WriteLine($"qwen3 shape ({q.Layers} of 28 layers, {q.Parameters / 1e6:F0}M params) {q.Mode,-13} {q.TokensPerS,8:F1} tok/s  {q.Seconds,6:F1} s  peak RSS {q.PeakRssBytes / 1e9,5:F2} GB  implied {q.StateBytes / 1e9,5:F2} GB  ({q.PeakOverState:F2}x)");
        foreach (var u in r.Budgets.Where(u => u.CutShort || u.Note?.Contains("killed") == true))
            Console.WriteLine($"budget: {u.Measurement} stopped early ({u.Seconds:F0} of {u.BudgetSeconds:F0} s{(u.Note is null ? "" : "; " + u.Note)})");
        Console.WriteLine($"({r.Seconds:F0} s; top-level numbers are the '{r.Reference}' size's)");
    }
}
