using System.Diagnostics;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Stages;
using Research.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Bench;

public static partial class Benchmarks
{
    /// <summary>
    /// The trainer in bf16 (float32 master weights) against float32: two runs of warm-up + 2 · steps steps from
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
                var steps = o.Steps * 2;
                var config = Config(s, o.WarmupSteps + steps + 1) with { Precision = precision, ForceBf16 = true, LogEvery = 1 };   // forced: the bench measures bf16 itself
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
}
