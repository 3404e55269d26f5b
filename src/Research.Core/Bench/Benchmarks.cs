using System.Diagnostics;
using Research.Data;
using Research.Data.Synthetic;
using Research.Models;
using Research.Runs;
using Research.Stages;
using Research.Stages.Merge;
using Research.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Bench;

/// <summary>One model size to measure: the model, the micro-batch (sequences) and the context length.</summary>
public sealed record BenchSize(string Name, ModelConfig Model, int BatchSize, int BlockLength);

/// <summary>How much to measure. Steps are per timed round; rounds interleave the hand-written loop and ours.</summary>
public sealed record BenchOptions
{
    public IReadOnlyList<BenchSize> Sizes { get; init; } = [BenchSizes.Tiny];
    /// <summary>Untimed steps before timing (both loops).</summary>
    public int WarmupSteps { get; init; } = 2;
    /// <summary>Timed steps per round, per loop.</summary>
    public int Steps { get; init; } = 5;
    /// <summary>Rounds of the two loops, interleaved in alternating order (hand first, then ours first) to cancel drift and order effects.</summary>
    public int Rounds { get; init; } = 2;
    /// <summary>Steps of our loop between the two resident-memory readings (after warm-up).</summary>
    public int RssSteps { get; init; } = 100;
    /// <summary>The model of the resident-memory run (small and fast, so many steps fit).</summary>
    public BenchSize RssSize { get; init; } = BenchSizes.Rss;
    /// <summary>The model whose two checkpoints are merged.</summary>
    public BenchSize MergeSize { get; init; } = BenchSizes.Tiny;
    /// <summary>The model of the merge peak-memory measurement (two checkpoints of it are merged; &gt;= 50 MB each by default).</summary>
    public ModelConfig MergeMemoryModel { get; init; } = Bench.MergeMemory.Model50MB;
    /// <summary>Output shard size of the merge peak-memory measurement: small shards make the bound 1.5 × (tensor + shard) tight.</summary>
    public long MergeMemoryShardBytes { get; init; } = 16_000_000;
    /// <summary>QuickWorld documents packed and evaluated.</summary>
    public int Documents { get; init; } = 400;
    /// <summary>Repetitions of the matmul list when measuring the sgemm rate.</summary>
    public int MatmulRepeats { get; init; } = 5;

    /// <summary>About a minute on two cores: the tiny model only.</summary>
    public static BenchOptions Quick => new();

    /// <summary>tiny, small (~10M parameters) and d_model 512; 2,000 steps for the memory reading. Several minutes.</summary>
    public static BenchOptions Full => new()
    {
        Sizes = [BenchSizes.Tiny, BenchSizes.Small, BenchSizes.D512],
        WarmupSteps = 3, Steps = 8, Rounds = 4, RssSteps = 2000, MergeSize = BenchSizes.Small, Documents = 1000, MatmulRepeats = 10,
    };

    /// <summary>The smallest setting (tests): a micro model, a handful of steps.</summary>
    public static BenchOptions Smallest => new()
    {
        Sizes = [BenchSizes.Micro], WarmupSteps = 1, Steps = 2, Rounds = 1, RssSteps = 10,
        RssSize = BenchSizes.Micro, MergeSize = BenchSizes.Micro, Documents = 40, MatmulRepeats = 2,
        MergeMemoryModel = BenchSizes.Micro.Model, MergeMemoryShardBytes = 1_000_000,
    };
}

public static class BenchSizes
{
    /// <summary>Byte-level vocabulary (ByteTokenizer).</summary>
    const int Vocab = 259;

    public static BenchSize Micro => new("micro", new ModelConfig
    {
        VocabSize = Vocab, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64,
    }, 2, 32);

    /// <summary>d_model 128, 4 layers (~0.8M parameters), batch 8 x 128.</summary>
    public static BenchSize Tiny => new("tiny", new ModelConfig { VocabSize = Vocab, MaxPositionEmbeddings = 256 }, 8, 128);

    /// <summary>d_model 384, 6 layers (~9.8M parameters), batch 8 x 256.</summary>
    public static BenchSize Small => new("small", new ModelConfig
    {
        VocabSize = Vocab, HiddenSize = 384, IntermediateSize = 1024, NumHiddenLayers = 6, NumAttentionHeads = 6, NumKeyValueHeads = 3, MaxPositionEmbeddings = 256,
    }, 8, 256);

    /// <summary>d_model 512, 4 layers, batch 8 x 256: the shape the platform notes measured by hand.</summary>
    public static BenchSize D512 => new("d512", new ModelConfig
    {
        VocabSize = Vocab, HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 4, MaxPositionEmbeddings = 256,
    }, 8, 256);

    /// <summary>The resident-memory run: tiny model, batch 2 x 64, so 2,000 steps take well under a minute.</summary>
    public static BenchSize Rss => new("rss", new ModelConfig { VocabSize = Vocab, MaxPositionEmbeddings = 64 }, 2, 64);
}

/// <summary>Training-loop numbers of one model size.</summary>
/// <param name="OurTokensPerS">Trainer.Run, timed between the start of step W and the start of step W + Steps.</param>
/// <param name="HandTokensPerS">A hand-written TorchSharp loop of the same model, batch and optimizer (our AdamW).</param>
/// <param name="LoopRatio">OurTokensPerS / HandTokensPerS.</param>
/// <param name="FlopsPerToken">6N + 12·L·d_attn·T (nanoGPT's estimate_mfu).</param>
/// <param name="SgemmFlopsPerS">torch.matmul rate on the model's own linear shapes (B·T x in) @ (in x out), float32.</param>
/// <param name="Mfu">FlopsPerToken · OurTokensPerS / SgemmFlopsPerS.</param>
/// <param name="HandMfu">The same for the hand-written loop.</param>
/// <param name="OptimizerShare">Time in AdamW.Step / time of the whole step, in the hand-written loop (synced around the step).</param>
/// <param name="Bf16MatmulSpeedup">bf16 matmul rate / float32 matmul rate on the same shapes.</param>
/// <param name="Bf16ForwardBackwardSpeedup">A hand-written forward + backward of the model cast to bf16 vs float32.</param>
/// <param name="Bf16TrainSpeedup">Trainer.Run tokens/s with Precision.BFloat16 (float32 master weights) / with Float32, same model, batch and steps.</param>
/// <param name="Bf16LossGap">The largest |loss_bf16 − loss_fp32| / loss_fp32 over the steps of those two runs (from the same initial weights).</param>
/// <param name="EvalSequencesPerS">Eval.Perplexity windows of BlockLength per second.</param>
public sealed record SizeResult(
    string Name, long Parameters, int HiddenSize, int Layers, int BatchSize, int BlockLength,
    double OurTokensPerS, double HandTokensPerS, double LoopRatio,
    double FlopsPerToken, double SgemmFlopsPerS, double Mfu, double HandMfu,
    double OptimizerShare, double Bf16MatmulSpeedup, double Bf16ForwardBackwardSpeedup, double EvalSequencesPerS,
    double Bf16TrainSpeedup, double Bf16LossGap);

/// <param name="RssGrowth">(RSS after N steps − RSS after warm-up) / RSS after warm-up, our loop, GC forced at both readings.</param>
public sealed record RssResult(int Steps, long RssAfterWarmupBytes, long RssAfterStepsBytes, double RssGrowth);

/// <param name="MergeBytesPerS">(bytes of both inputs + bytes written) / time of StreamingMerge.Run (linear, two checkpoints).</param>
/// <param name="FileCopyBytesPerS">(bytes read + written) / time of File.Copy of one input's model.safetensors.</param>
/// <param name="MemoryCopyBytesPerS">(bytes read + written) / time of Buffer.BlockCopy of the same number of bytes in memory.</param>
/// <param name="MergeBandwidthRatio">MergeBytesPerS / MemoryCopyBytesPerS (the definition).</param>
/// <param name="MemoryFsMergeBytesPerS">The same merge with its output in /dev/shm (tmpfs: no disk behind the page cache, a flush costs
/// nothing), so what is left is the merge's own work; NaN where there is no /dev/shm with room.</param>
public sealed record MergeResult(long CheckpointBytes, double MergeBytesPerS, double FileCopyBytesPerS, double MemoryCopyBytesPerS, double MergeBandwidthRatio,
    double MemoryFsMergeBytesPerS = double.NaN)
{
    /// <summary>MergeBytesPerS / FileCopyBytesPerS: against copying one input file (page cache to page cache, no flush).</summary>
    public double FileCopyRatio => MergeBytesPerS / FileCopyBytesPerS;
}

/// <param name="ByteTokenizerMbPerS">UTF-8 megabytes (1e6) of QuickWorld text per second through Packing.Pack with ByteTokenizer.</param>
public sealed record PackingResult(long Bytes, double ByteTokenizerMbPerS);

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
public static class Benchmarks
{
    /// <summary>nanoGPT's estimate_mfu: 6N + 12·L·(heads·head_dim)·T FLOPs per token (forward + backward).</summary>
    public static double FlopsPerToken(ModelConfig c, long parameters, int blockLength) =>
        6.0 * parameters + 12.0 * c.NumHiddenLayers * c.NumAttentionHeads * c.HeadDim * blockLength;

    /// <summary>Parameters that do a matmul per token: all of them when the embedding is tied (it is the LM head), else all but the input embedding (a lookup).</summary>
    public static long MatmulParameters(CausalLM model) =>
        model.ParameterCount() - (model.Config.TieWordEmbeddings ? 0 : model.EmbeddingWeight.numel());

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

    /// <summary>Training loops, sgemm, mfu, optimizer share, bf16 and evaluation for one size.</summary>
    public static SizeResult Size(BenchSize s, BenchOptions o, IReadOnlyList<Document> docs, Device device)
    {
        var blocks = Blocks(docs, s);
        using var model = new CausalLM(s.Model, seed: 1);
        model.to(device);
        var tokensPerStep = (double)s.BatchSize * s.BlockLength;

        // Interleaved rounds, in alternating order (hand first, then ours first) so drift and order effects cancel. Each
        // round binds the parameters to its own optimizer's flat buffers, as Trainer.Run does: an optimizer built once
        // would, after the trainer's first run re-bound them, zero and update buffers the model no longer uses.
        var handConfig = Config(s, int.MaxValue);
        long handStep = 0;
        double handSeconds = 0, handOptimizerSeconds = 0, ourSeconds = 0;
        void Hand()
        {
            using var handOptimizer = new AdamW(model.named_parameters().Select(p => (p.name, p.parameter)));
            HandSteps(model, handOptimizer, blocks, s, handConfig, ref handStep, o.WarmupSteps, device);
            var (total, opt) = HandSteps(model, handOptimizer, blocks, s, handConfig, ref handStep, o.Steps, device);
            handSeconds += total;
            handOptimizerSeconds += opt;
        }
        void Ours() => ourSeconds += OurSteps(model, blocks, s, o.WarmupSteps, o.Steps, device, null);
        for (int r = 0; r < o.Rounds; r++)
        {
            if (r % 2 == 0) { Hand(); Ours(); }
            else { Ours(); Hand(); }
        }
        var timed = (double)o.Steps * o.Rounds * tokensPerStep;
        var ours = timed / ourSeconds;
        var hand = timed / handSeconds;

        var flops = FlopsPerToken(s.Model, MatmulParameters(model), s.BlockLength);
        var sgemm = MatmulRate(s, float32, o.MatmulRepeats, device);
        var bf16 = MatmulRate(s, bfloat16, o.MatmulRepeats, device);
        var fwdBwd = ForwardBackwardSpeedup(s, blocks, o, device);
        var eval = EvalRate(model, docs, s);
        var (bf16Train, bf16Gap) = Bf16Training(s, blocks, o, device);
        return new SizeResult(s.Name, model.ParameterCount(), s.Model.HiddenSize, s.Model.NumHiddenLayers, s.BatchSize, s.BlockLength,
            ours, hand, ours / hand, flops, sgemm, flops * ours / sgemm, flops * hand / sgemm,
            handOptimizerSeconds / handSeconds, bf16 / sgemm, fwdBwd, eval, bf16Train, bf16Gap);
    }

    /// <summary>
    /// The trainer in bf16 (float32 master weights) against float32: two runs of warm-up + steps·rounds steps from
    /// the same initial weights and batches, timed over the steps after warm-up; returns (fp32 time / bf16 time,
    /// the largest relative gap between their per-step losses).
    /// </summary>
    public static (double Speedup, double LossGap) Bf16Training(BenchSize s, TokenBlocks blocks, BenchOptions o, Device device)
    {
        (double Seconds, double[] Losses) Train(Precision precision)
        {
            var dir = Path.Combine(Path.GetTempPath(), "research-bench", Guid.NewGuid().ToString("N"));
            try
            {
                using var model = new CausalLM(s.Model, seed: 1);
                model.to(device);
                var steps = o.Steps * o.Rounds;
                var config = Config(s, o.WarmupSteps + steps + 1) with { Precision = precision, LogEvery = 1 };
                var objective = new MarkedObjective(Adapt.Pretrain(blocks, config, "bench"), o.WarmupSteps, o.WarmupSteps + steps, null);
                Trainer.Run(model, ByteTokenizer.Instance, objective, config, dir, validate: null, log: TextWriter.Null);
                if (objective.Start is not { } a || objective.End is not { } b) throw new InvalidOperationException("bench: the trainer did not reach the marked steps");
                var losses = MetricsLog.Read(Path.Combine(dir, Trainer.MetricsFile)).Where(x => x["kind"]?.GetValue<string>() == "train")
                    .Select(x => x["loss"]!.GetValue<double>()).ToArray();
                return ((double)(b - a) / Stopwatch.Frequency, losses);
            }
            finally
            {
                if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            }
        }
        var f32 = Train(Precision.Float32);
        var b16 = Train(Precision.BFloat16);
        var gap = f32.Losses.Zip(b16.Losses, (x, y) => Math.Abs(y - x) / x).DefaultIfEmpty(double.NaN).Max();
        return (f32.Seconds / b16.Seconds, gap);
    }

    static LmBatch HandBatch(TokenBlocks blocks, BenchSize s, long step, Device device)
    {
        var list = new int[s.BatchSize][];
        for (int i = 0; i < s.BatchSize; i++) list[i] = blocks.Block((int)((step * s.BatchSize + i) % blocks.Count)).ToArray();
        return LanguageModeling.FromBlocks(list, device);
    }

    /// <summary>The hand-written loop: one dispose scope per step, mean cross-entropy, torch's clip_grad_norm_, our AdamW.
    /// Returns (seconds of all steps, seconds inside AdamW.Step), each step synced before and after the optimizer.</summary>
    static (double Total, double Optimizer) HandSteps(CausalLM model, AdamW optimizer, TokenBlocks blocks, BenchSize s, TrainConfig config, ref long step, int steps, Device device)
    {
        model.train();
        var parameters = model.parameters().ToArray();
        long optTicks = 0;
        var start = Stopwatch.GetTimestamp();
        for (int i = 0; i < steps; i++, step++)
        {
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            using var batch = HandBatch(blocks, s, step, device);
            var logits = model.Forward(batch.Input);
            var loss = F.cross_entropy(logits.reshape(-1, logits.shape[^1]), batch.Target.reshape(-1));
            loss.backward();
            nn.utils.clip_grad_norm_(parameters, 1.0);
            Sync(loss);
            var t0 = Stopwatch.GetTimestamp();
            optimizer.Step(config.LearningRate, config);
            Sync(parameters[0]);
            optTicks += Stopwatch.GetTimestamp() - t0;
        }
        var total = Stopwatch.GetTimestamp() - start;
        return ((double)total / Stopwatch.Frequency, (double)optTicks / Stopwatch.Frequency);
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

    /// <summary>
    /// The matrix multiplies of one forward, as the model runs them: q, k and v stacked into one (in → q + 2 kv),
    /// the output projection, gate and up stacked (in → 2 · intermediate), down, and the LM head.
    /// </summary>
    public static IReadOnlyList<(int In, int Out, int Count)> LinearShapes(ModelConfig c)
    {
        var kv = c.NumKeyValueHeads * c.HeadDim;
        var q = c.NumAttentionHeads * c.HeadDim;
        var l = c.NumHiddenLayers;
        return [(c.HiddenSize, q + 2 * kv, l), (q, c.HiddenSize, l), (c.HiddenSize, 2 * c.IntermediateSize, l), (c.IntermediateSize, c.HiddenSize, l), (c.HiddenSize, c.VocabSize, 1)];
    }

    /// <summary>
    /// FLOP/s of the three matrix multiplies a training step does per linear, in the model's own layouts (weights
    /// stored out × in): forward Y = X Wᵀ (F.linear), input gradient dX = dY W, weight gradient dW = dYᵀ X, with
    /// X of B·T rows; in <paramref name="dtype"/>, after one warm-up pass.
    /// </summary>
    public static double MatmulRate(BenchSize s, ScalarType dtype, int repeats, Device device)
    {
        using var scope = NewDisposeScope();
        var m = (long)s.BatchSize * s.BlockLength;
        var shapes = LinearShapes(s.Model).Select(x => (X: randn(m, x.In, dtype: dtype, device: device), W: randn(x.Out, x.In, dtype: dtype, device: device),
            DY: randn(m, x.Out, dtype: dtype, device: device), x.Count)).ToArray();
        double flops = 0;
        void Pass(bool count)
        {
            foreach (var (x, w, dy, n) in shapes)
                for (int i = 0; i < n; i++)
                {
                    using (var y = F.linear(x, w)) { }
                    using (var dx = matmul(dy, w)) { }
                    using (var dyT = dy.t())
                    using (var dw = matmul(dyT, x)) { }
                    if (count) flops += 3 * 2.0 * x.shape[0] * x.shape[1] * w.shape[0];
                }
        }
        Pass(false);
        Sync(shapes[0].X);
        var sw = Stopwatch.StartNew();
        for (int r = 0; r < repeats; r++) Pass(true);
        Sync(shapes[0].X);
        return flops / sw.Elapsed.TotalSeconds;
    }

    /// <summary>Forward + loss + backward of the model in bf16 vs float32 (same batches, no optimizer): time32 / time16.</summary>
    public static double ForwardBackwardSpeedup(BenchSize s, TokenBlocks blocks, BenchOptions o, Device device)
    {
        double Time(ScalarType dtype)
        {
            using var model = new CausalLM(s.Model, seed: 1);
            model.to(device).to(dtype);
            model.train();
            double seconds = 0;
            // few steps: one bf16 run on the loaded 2-core machine was far slower than float32, another on par
            const int warm = 1;
            var steps = Math.Min(o.Steps, 3);
            for (int i = 0; i < warm + steps; i++)
            {
                using var scope = NewDisposeScope();
                using var batch = HandBatch(blocks, s, i, device);
                var t0 = Stopwatch.GetTimestamp();
                var logits = model.Forward(batch.Input);
                var loss = F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(float32), batch.Target.reshape(-1));
                loss.backward();
                Sync(loss);
                if (i >= warm) seconds += (double)(Stopwatch.GetTimestamp() - t0) / Stopwatch.Frequency;
                foreach (var p in model.parameters()) p.grad = null;
            }
            return seconds;
        }
        var t32 = Time(float32);
        var t16 = Time(bfloat16);
        return t32 / t16;
    }

    /// <summary>Eval.Perplexity windows (of BlockLength) per second, batch BatchSize.</summary>
    public static double EvalRate(CausalLM model, IReadOnlyList<Document> docs, BenchSize s)
    {
        var tok = ByteTokenizer.Instance;
        var subset = docs.Take(Math.Max(1, docs.Count / 10)).ToArray();
        var windows = subset.Sum(d => (tok.Encode(d.Text).Length + s.BlockLength - 1) / s.BlockLength);
        Eval.Perplexity.Evaluate(model, tok, subset.Take(2).ToArray(), "warmup", s.BlockLength, s.BatchSize);
        var sw = Stopwatch.StartNew();
        Eval.Perplexity.Evaluate(model, tok, subset, "bench", s.BlockLength, s.BatchSize);
        return windows / sw.Elapsed.TotalSeconds;
    }

    /// <summary>Packing.Pack with the byte tokenizer: best of three passes.</summary>
    public static PackingResult Packing(IReadOnlyList<Document> docs)
    {
        var best = double.MaxValue;
        long bytes = 0;
        for (int i = 0; i < 3; i++)
        {
            var sw = Stopwatch.StartNew();
            var b = Data.Packing.Pack(docs, ByteTokenizer.Instance, 64, "bench");
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
            bytes = b.Bytes;
        }
        return new PackingResult(bytes, bytes / 1e6 / best);
    }

    /// <summary>Resident memory of our loop: read after <paramref name="warmup"/> steps and after <paramref name="steps"/> more, GC forced before each reading.</summary>
    public static RssResult Rss(BenchSize s, int steps, int warmup, IReadOnlyList<Document> docs, Device device)
    {
        var blocks = Blocks(docs, s);
        using var model = new CausalLM(s.Model, seed: 1);
        model.to(device);
        var readings = new long[2];
        OurSteps(model, blocks, s, Math.Max(warmup, 5), steps, device, i => readings[i] = ResidentBytes());
        return new RssResult(steps, readings[0], readings[1], (readings[1] - readings[0]) / (double)readings[0]);
    }

    static long ResidentBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var p = Process.GetCurrentProcess();
        p.Refresh();
        return p.WorkingSet64;
    }

    /// <summary>StreamingMerge.Run (linear, two checkpoints of <paramref name="s"/>) vs File.Copy and an in-memory copy of the same bytes; best of three each.</summary>
    public static MergeResult Merge(BenchSize s)
    {
        var root = Path.Combine(Path.GetTempPath(), "research-bench", "merge-" + Guid.NewGuid().ToString("N"));
        try
        {
            string[] inputs = [Path.Combine(root, "a"), Path.Combine(root, "b")];
            for (int i = 0; i < 2; i++)
            {
                using var model = new CausalLM(s.Model, seed: i + 1);
                Checkpoint.Save(inputs[i], model, ByteTokenizer.Instance);
            }
            var file = Path.Combine(inputs[0], Safetensors.SingleFileName);
            var size = new FileInfo(file).Length;
            var half = new Dictionary<string, ParamSetting> { ["weight"] = ParamSetting.Constant(0.5) };
            var config = new MergeConfig { Method = MergeMethod.Linear, Models = inputs.Select(p => new MergeModel(p, half)).ToArray() };
            var output = Path.Combine(root, "merged");
            // Best of three merges into `dir` (removed before each).
            double MergeSeconds(string dir)
            {
                var best = double.MaxValue;
                for (int i = 0; i < 3; i++)
                {
                    if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
                    var sw = Stopwatch.StartNew();
                    StreamingMerge.Run(config, dir);
                    best = Math.Min(best, sw.Elapsed.TotalSeconds);
                }
                return best;
            }
            var mergeBest = MergeSeconds(output);
            var outBytes = new FileInfo(Path.Combine(output, Safetensors.SingleFileName)).Length;
            double copyBest = double.MaxValue, memBest = double.MaxValue;
            var src = new byte[size];
            var dst = new byte[size];
            new Random(1).NextBytes(src);
            for (int i = 0; i < 3; i++)
            {
                var copy = Path.Combine(root, "copy.safetensors");
                var sw = Stopwatch.StartNew();
                File.Copy(file, copy, overwrite: true);
                copyBest = Math.Min(copyBest, sw.Elapsed.TotalSeconds);
                File.Delete(copy);

                sw.Restart();
                Buffer.BlockCopy(src, 0, dst, 0, src.Length);
                memBest = Math.Min(memBest, sw.Elapsed.TotalSeconds);
            }
            // The same merge with its output on tmpfs: no disk behind the page cache, so what is left is the merge's own work.
            var shm = "/dev/shm";
            var memoryFs = double.NaN;
            if (Directory.Exists(shm) && new DriveInfo(shm).AvailableFreeSpace > 4 * size)
            {
                var shmOut = Path.Combine(shm, "research-bench-merge-" + Guid.NewGuid().ToString("N"));
                try { memoryFs = (2.0 * size + outBytes) / MergeSeconds(shmOut); }
                finally
                {
                    if (Directory.Exists(shmOut)) Directory.Delete(shmOut, recursive: true);
                }
            }
            var merge = (2.0 * size + outBytes) / mergeBest;
            var fileCopy = 2.0 * size / copyBest;
            var mem = 2.0 * size / memBest;
            return new MergeResult(size, merge, fileCopy, mem, merge / mem, memoryFs);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }
}
