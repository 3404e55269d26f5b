using System.Diagnostics;
using Research.Data;
using Research.Data.Synthetic;
using Research.Models;
using Research.Stages;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Bench;

public sealed record MachineInfo(int Cores, int TorchThreads, string Device, string Os, string Runtime);

/// <summary>Everything <c>research bench</c> measures. The top-level numbers repeat those of <see cref="Reference"/>.</summary>
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
        var docs = QuickWorld.General(o.Documents, 7);
        var packing = Packing(docs);
        log.WriteLine($"packing: {packing.ByteTokenizerMbPerS:F1} MB/s");
        var sizes = new List<SizeResult>();
        foreach (var s in o.Sizes)
        {
            var r = Size(s, o, docs, device);
            log.WriteLine($"{s.Name}: {r.Parameters / 1e6:F2}M params, ours {r.OurTokensPerS:F0} tok/s, hand {r.HandTokensPerS:F0} tok/s, ratio {r.LoopRatio:F3}, mfu {r.Mfu:F3}, optimizer {r.OptimizerShare:P1}");
            sizes.Add(r);
        }
        var rss = Rss(o.RssSize, o.RssSteps, o.WarmupSteps, docs, device);
        log.WriteLine($"rss: {rss.RssGrowth:P2} over {rss.Steps} steps");
        var merge = Merge(o.MergeSize);
        log.WriteLine($"merge: {merge.MergeBandwidthRatio:F3} of memory copy ({merge.FileCopyRatio:F3} of file copy)");
        var mergeMemory = Bench.MergeMemory.RunMany(o.MergeMemoryModel, o.MergeMemoryShardBytes, Bench.MergeMemory.Methods, log);
        var reference = sizes.FirstOrDefault(x => x.Name == "small") ?? sizes[0];
        var machine = new MachineInfo(Environment.ProcessorCount, get_num_threads(), device.ToString(),
            System.Runtime.InteropServices.RuntimeInformation.OSDescription, System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription);
        // bf16 is judged at the largest size (d_model 512 in the default bench): small models are overhead-bound.
        var widest = sizes.OrderBy(x => x.HiddenSize).Last();
        return new BenchReport(reference.Name, reference.LoopRatio, reference.Mfu, reference.OptimizerShare, rss.RssGrowth, merge.MergeBandwidthRatio,
            reference.Bf16MatmulSpeedup, reference.Bf16ForwardBackwardSpeedup, packing.ByteTokenizerMbPerS, reference.EvalSequencesPerS,
            machine, sizes, rss, merge, packing, clock.Elapsed.TotalSeconds, widest.Bf16TrainSpeedup, widest.Bf16LossGap, widest.Name, mergeMemory);
    }

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
