using System.Diagnostics;
using Research.Backend;
using Research.Data;
using Research.Data.Synthetic;
using Research.Models;
using Research.Stages;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Bench;

/// <param name="CpuModel">/proc/cpuinfo's model name of the first processor ("unknown" where there is none).</param>
/// <param name="CpuFlags">Its flags (x86) or features (aarch64).</param>
/// <param name="LoadAverage">/proc/loadavg's 1, 5 and 15-minute load averages when the bench started (other work on the machine).</param>
public sealed record MachineInfo(int Cores, int TorchThreads, string Device, string Os, string Runtime,
    string CpuModel = "unknown", IReadOnlyList<string>? CpuFlags = null, IReadOnlyList<double>? LoadAverage = null)
{
    public static IReadOnlyList<double> ReadLoadAverage() =>
        File.Exists("/proc/loadavg")
            ? File.ReadAllText("/proc/loadavg").Split(' ').Take(3).Select(x => double.Parse(x, System.Globalization.CultureInfo.InvariantCulture)).ToArray()
            : [];
}

/// <summary>Whether bf16 was measured: <paramref name="Native"/> and the reason from <see cref="Bf16Support"/>, and the short probe's bf16 / float32 matmul rate.</summary>
public sealed record Bf16Report(bool Native, bool Measured, string Reason, double ProbeSpeedup);

/// <summary>The PyTorch peer: <paramref name="Info"/> when it ran, else why not.</summary>
public sealed record PeerReport(bool Available, string? Reason, PeerInfo? Info);

/// <summary>Everything <c>research bench</c> measures. The top-level numbers repeat those of <see cref="Reference"/>; bf16 numbers are NaN when not measured.</summary>
public sealed record BenchReport(
    string Reference,
    double LoopRatio, double Mfu, double OptimizerShare, double RssGrowth, double MergeBandwidthRatio,
    double Bf16MatmulSpeedup, double Bf16ForwardBackwardSpeedup, double PackingMbPerS, double EvalSequencesPerS,
    MachineInfo Machine, IReadOnlyList<SizeResult> Sizes, RssResult Rss, MergeResult Merge, PackingResult Packing, double Seconds,
    double Bf16Speedup, double Bf16LossGap, string Bf16Size,
    IReadOnlyList<MergeMemoryResult>? MergeMemory = null)
{
    /// <summary>
    /// The largest, over the merge methods measured, peak anonymous RSS growth of a streaming merge / (largest tensor + output
    /// shard); the claim holds below 1.5 (see <see cref="Bench.MergeMemory"/>).
    /// </summary>
    public double MergePeakMemoryRatio => MergeMemory is { Count: > 0 } m ? m.Max(x => x.Ratio) : double.NaN;
    /// <summary>The reference size's tokens/s ÷ the PyTorch peer's (NaN without the peer).</summary>
    public double PeerRatio => Sizes.FirstOrDefault(x => x.Name == Reference)?.PeerRatio ?? double.NaN;
    public Bf16Report? Bf16 { get; init; }
    public PeerReport? Peer { get; init; }
    /// <summary>Each measurement's time budget and use.</summary>
    public IReadOnlyList<BudgetUse> Budgets { get; init; } = [];
    /// <summary>The Qwen3-0.6B-shaped measurements (each in a process of its own; run by the command, see <see cref="RealShape"/>).</summary>
    public IReadOnlyList<RealShapeResult> RealShapes { get; init; } = [];
    /// <summary>Rollout tokens/s with and without the KV cache and GRPO step tokens/s, per size of <see cref="BenchOptions.OnlineSizes"/>.</summary>
    public IReadOnlyList<OnlineResult> Online { get; init; } = [];
    /// <summary>The options' label (quick, default, smallest).</summary>
    public string Setting { get; init; } = "";
}

/// <summary>
/// The measurements of <c>research bench</c>, as plain functions. Timings are wall clock on the chosen device;
/// on CPU every op is synchronous, on CUDA the optimizer timing syncs with <c>.item()</c>.
/// </summary>
public static partial class Benchmarks
{
    /// <summary>Runs everything in <paramref name="o"/>; <paramref name="log"/> gets one line per finished measurement.</summary>
    public static BenchReport Run(BenchOptions o, Device? device = null, TextWriter? log = null)
    {
        device ??= CPU;
        log ??= TextWriter.Null;
        var clock = Stopwatch.StartNew();
        var cpu = CpuInfo.Current;
        var machine = new MachineInfo(Environment.ProcessorCount, get_num_threads(), device.ToString(),
            System.Runtime.InteropServices.RuntimeInformation.OSDescription, System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
            cpu?.Model ?? "unknown", cpu?.Flags ?? [], MachineInfo.ReadLoadAverage());
        log.WriteLine($"machine: {machine.CpuModel}, {machine.Cores} cores, torch threads {machine.TorchThreads}, load average {string.Join(" ", machine.LoadAverage!)}");
        var support = Bf16Support.For(device);
        var probe = Bf16Probe.Measured;
        var bf16 = Bf16Plan(o.Bf16, support, probe.Speedup);
        var measureBf16 = bf16.Measured;
        log.WriteLine(measureBf16 ? $"bf16: measured ({support.Reason})"
            : $"bf16: not applicable, not measured: {support.Reason}; a 256x256 bf16 matmul ran at {probe.Speedup:F3}x the float32 rate");
        var budgets = new List<BudgetUse>();
        var docs = QuickWorld.General(o.Documents, 7);
        var packing = Packing(docs);
        log.WriteLine($"packing: {packing.ByteTokenizerMbPerS:F1} MB/s");
        var sizes = new List<SizeResult>();
        PeerReport? peerReport = o.Peer ? null : new PeerReport(false, "not asked for", null);
        foreach (var s in o.Sizes)
        {
            string? reason = null;
            using var peer = o.Peer ? PeerLoop.Start(PeerLoop.Config(s, Config(s, 1), o.WarmupSteps, get_num_threads()), out reason) : null;
            if (o.Peer && peerReport is null) peerReport = new PeerReport(peer is not null, reason, peer?.Info);
            var r = Size(s, o, docs, device, measureBf16, peer, budgets);
            if (peer is not null && peer.Info.Parameters != r.Parameters)
                throw new InvalidOperationException($"bench: the PyTorch peer's {s.Name} model has {peer.Info.Parameters} parameters, ours {r.Parameters}: Bench/peer/llama_peer.py no longer builds the same model");
            log.WriteLine($"{s.Name}: {r.Parameters / 1e6:F2}M params, ours {r.OurTokensPerS:F0} tok/s, hand {r.HandTokensPerS:F0} tok/s, ratio {r.LoopRatio:F3}, " +
                          $"pytorch {r.PeerTokensPerS:F0} tok/s (ours / pytorch {r.PeerRatio:F2}), mfu {r.Mfu:F3}, optimizer {r.OptimizerShare:P1}, {r.Rounds} rounds");
            sizes.Add(r);
        }
        var rss = Rss(o.RssSize, o.RssSteps, o.WarmupSteps, docs, device);
        log.WriteLine($"rss: {rss.RssGrowth:P2} over {rss.Steps} steps");
        var mergeBudget = new Budget("merge bandwidth", o.MergeSeconds);
        var merge = Merge(o.MergeModel, mergeBudget);
        budgets.Add(mergeBudget.Use($"{merge.CheckpointBytes / 1e6:F0} MB checkpoints, {merge.Rounds} rounds"));
        log.WriteLine($"merge: {merge.MergeBandwidthRatio:F3} of a durable copy ({merge.MergeBytesPerS / 1e6:F0} vs {merge.DurableCopyBytesPerS / 1e6:F0} MB/s; {merge.CheckpointBytes / 1e6:F0} MB checkpoints)");
        var mmBudget = new Budget("merge peak memory", o.MergeMemorySeconds);
        var mergeMemory = Bench.MergeMemory.RunMany(o.MergeMemoryModel, o.MergeMemoryShardBytes, Bench.MergeMemory.Methods, log, mmBudget);
        budgets.Add(mmBudget.Use($"{mergeMemory.Count} of {Bench.MergeMemory.Methods.Count} methods"));
        var online = new List<OnlineResult>();
        foreach (var s in o.OnlineSizes)
        {
            var onlineBudget = new Budget($"online ({s.Name})", o.OnlineSeconds);
            var r = Online(s, o.OnlineCompletions, o.OnlineNewTokens, o.OnlineSteps, device, onlineBudget);
            budgets.Add(onlineBudget.Use($"{r.Rounds} sampler rounds"));
            log.WriteLine($"online {s.Name}: rollouts {r.CachedTokensPerS:F0} tok/s with the KV cache, {r.UncachedTokensPerS:F0} without ({r.CacheSpeedup:F1}x); " +
                          $"grpo {r.GrpoTokensPerS:F0} tok/s, {r.GrpoStepSeconds:F2} s a step, {r.RolloutShare:P0} of it rollouts");
            online.Add(r);
        }
        var reference = sizes.FirstOrDefault(x => x.Name == "small") ?? sizes[0];
        // bf16 is judged at the largest size (d_model 512 in the default bench): small models are overhead-bound.
        var widest = sizes.OrderBy(x => x.HiddenSize).Last();
        return new BenchReport(reference.Name, reference.LoopRatio, reference.Mfu, reference.OptimizerShare, rss.RssGrowth, merge.MergeBandwidthRatio,
            reference.Bf16MatmulSpeedup, reference.Bf16ForwardBackwardSpeedup, packing.ByteTokenizerMbPerS, reference.EvalSequencesPerS,
            machine, sizes, rss, merge, packing, clock.Elapsed.TotalSeconds, widest.Bf16TrainSpeedup, widest.Bf16LossGap, widest.Name, mergeMemory)
        {
            Bf16 = bf16, Peer = peerReport, Budgets = budgets, Setting = o.Label, Online = online,
        };
    }

    /// <summary>Whether bf16 is measured: where the device computes it natively, or when asked always; else it is reported with the reason.</summary>
    public static Bf16Report Bf16Plan(Bf16Measure measure, Bf16Support support, double probeSpeedup) =>
        new(support.Native, measure == Bf16Measure.Always || support.Native, support.Reason, probeSpeedup);

    static TrainConfig Config(BenchSize s, int steps) => new()
    {
        Steps = steps, BatchSize = s.BatchSize, LearningRate = 1e-4, WarmupSteps = 0, Schedule = LrSchedule.Constant,
        LogEvery = steps, EvalEvery = 0, CheckpointEvery = 0, Seed = 1,
    };

    static TokenBlocks Blocks(IReadOnlyList<Document> docs, BenchSize s) => Data.Packing.Pack(docs, ByteTokenizer.Instance, s.BlockLength, "bench");

    static void Sync(Tensor t)
    {
        using var one = t.detach().reshape(-1)[0];
        one.to(float32).item<float>();
    }

    static LmBatch HandBatch(TokenBlocks blocks, BenchSize s, long step, Device device)
    {
        var list = new int[s.BatchSize][];
        for (int i = 0; i < s.BatchSize; i++) list[i] = blocks.Block((int)((step * s.BatchSize + i) % blocks.Count)).ToArray();
        return LanguageModeling.FromBlocks(list, device);
    }

    /// <summary>Trainer.Run for warmup + steps + 1 steps on a temp dir (logging once, no eval, no intermediate checkpoint);
    /// returns the seconds between the start of step <c>warmup</c> and the start of step <c>warmup + steps</c>.</summary>
    static double OurSteps(CausalLM model, TokenBlocks blocks, BenchSize s, int warmup, int steps, Device device, Action<int>? atMark)
    {
        var dir = Path.Combine(Path.GetTempPath(), "research-bench", Guid.NewGuid().ToString("N"));
        try
        {
            var config = Config(s, warmup + steps + 1);
            var objective = new MarkedObjective(Adapt.Pretrain(blocks, config, "bench"), warmup, warmup + steps, atMark);
            Trainer.Run(model, ByteTokenizer.Instance, objective, config, dir, validate: null, log: TextWriter.Null);
            if (objective.Start is not { } a || objective.End is not { } b) throw new InvalidOperationException("bench: the trainer did not reach the marked steps");
            return (double)(b - a) / Stopwatch.Frequency;
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Delegates to an objective; notes the time when the batch of two given steps is asked for (the start of those steps).</summary>
    sealed class MarkedObjective(IObjective<LmBatch> inner, long from, long to, Action<int>? atMark) : IObjective<LmBatch>
    {
        public long? Start { get; private set; }
        public long? End { get; private set; }
        public string Kind => inner.Kind;
        public string Fingerprint => inner.Fingerprint;

        public LmBatch Batch(long step, int micro, TrainConfig config, Device device)
        {
            if (micro == 0 && step == from) { atMark?.Invoke(0); Start = Stopwatch.GetTimestamp(); }
            if (micro == 0 && step == to) { End = Stopwatch.GetTimestamp(); atMark?.Invoke(1); }
            return inner.Batch(step, micro, config, device);
        }

        public Tensor Loss(CausalLM model, LmBatch batch, MetricSink metrics) => inner.Loss(model, batch, metrics);
    }
}
