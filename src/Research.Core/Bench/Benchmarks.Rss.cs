using System.Diagnostics;
using Research.Data;
using Research.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Bench;

/// <param name="RssGrowth">(RSS after N steps − RSS after warm-up) / RSS after warm-up, our loop, GC forced at both readings.</param>
public sealed record RssResult(int Steps, long RssAfterWarmupBytes, long RssAfterStepsBytes, double RssGrowth);

public static partial class Benchmarks
{
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
}
