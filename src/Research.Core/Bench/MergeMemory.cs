using System.Diagnostics;
using Research.Data;
using Research.Models;
using Research.Stages.Merge;
using static TorchSharp.torch;

namespace Research.Bench;

/// <summary>
/// Peak memory of a streaming merge of two models. <see cref="PeakGrowthBytes"/>: the most the process's resident memory
/// (VmRSS, sampled every millisecond by a background thread) rose above its reading just before the merge.
/// <see cref="BoundBytes"/> = 1.5 × (largest tensor + largest output shard); <see cref="Ratio"/> = growth / (largest tensor + shard),
/// so the claim "peak memory stays under 1.5 × (largest tensor + output shard)" holds when Ratio &lt; 1.5.
/// </summary>
public sealed record MergeMemoryResult(
    long ModelBytes, long LargestTensorBytes, long OutputShardBytes, int Shards, string Method,
    long BaselineRssBytes, long PeakRssBytes, long PeakGrowthBytes, long PeakAnonGrowthBytes, long BoundBytes, double Ratio, double Seconds, int Samples)
{
    public bool WithinBound => PeakGrowthBytes < BoundBytes;
}

public static class MergeMemory
{
    /// <summary>d_model 512, intermediate 1376, 6 layers, byte vocabulary, untied head: 19.3M float32 parameters, 77 MB per checkpoint.</summary>
    public static LlamaConfig Model50MB => new()
    {
        VocabSize = 259, HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = 6, NumAttentionHeads = 8, NumKeyValueHeads = 4,
        MaxPositionEmbeddings = 256, TieWordEmbeddings = false,
    };

    /// <summary>
    /// Writes a base and one fine-tune-like model (base + seeded noise) of <paramref name="model"/> to a temp directory, stream-merges
    /// them (TIES by default; output shards of at most <paramref name="maxShardBytes"/>, by default the one shard `research merge` writes) and samples the resident memory meanwhile.
    /// </summary>
    public static MergeMemoryResult Run(LlamaConfig? model = null, long maxShardBytes = StreamingMerge.DefaultShardBytes, MergeMethod method = MergeMethod.Ties, TextWriter? log = null)
    {
        model ??= Model50MB;
        var root = Path.Combine(Path.GetTempPath(), "research-bench", "merge-memory-" + Guid.NewGuid().ToString("N"));
        try
        {
            string[] inputs = [Path.Combine(root, "base"), Path.Combine(root, "tuned")];
            using (var m = new LlamaForCausalLM(model, seed: 1))
            {
                Checkpoint.Save(inputs[0], m, ByteTokenizer.Instance);
                using (no_grad())
                using (var g = new Generator(2))
                    foreach (var p in m.parameters()) p.add_(randn(p.shape, generator: g) * 0.01);
                Checkpoint.Save(inputs[1], m, ByteTokenizer.Instance);
            }
            long modelBytes, largest;
            using (var r = new CheckpointReader(inputs[0]))
            {
                modelBytes = r.Names.Sum(n => r.Entry(n).ByteLength);
                largest = r.Names.Max(n => r.Entry(n).ByteLength);
            }
            var config = new MergeConfig
            {
                Method = method, BaseModel = inputs[0],
                Models = [new MergeModel(inputs[1], new Dictionary<string, ParamSetting> { ["weight"] = ParamSetting.Constant(1.0) })],
                Parameters = new Dictionary<string, ParamSetting> { ["density"] = ParamSetting.Constant(0.5) },
            };
            var output = Path.Combine(root, "merged");
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var (baseline, baselineAnon) = Resident();
            long peak = baseline, peakAnon = baselineAnon;
            var samples = 0;
            var done = false;
            var sampler = new Thread(() =>
            {
                while (!Volatile.Read(ref done))
                {
                    var (rss, anon) = Resident();
                    peak = Math.Max(peak, rss);
                    peakAnon = Math.Max(peakAnon, anon);
                    samples++;
                    Thread.Sleep(1);
                }
            }) { IsBackground = true };
            var clock = Stopwatch.StartNew();
            sampler.Start();
            MergeReport report;
            try { report = StreamingMerge.Run(config, output, maxShardBytes); }
            finally
            {
                Volatile.Write(ref done, true);
                sampler.Join();
            }
            var seconds = clock.Elapsed.TotalSeconds;
            var (after, afterAnon) = Resident();
            peak = Math.Max(peak, after);
            peakAnon = Math.Max(peakAnon, afterAnon);
            var shard = Directory.GetFiles(output, "*.safetensors").Max(f => new FileInfo(f).Length);
            var growth = peak - baseline;
            var result = new MergeMemoryResult(modelBytes, largest, shard, report.Shards, MergeConfig.MethodName(method),
                baseline, peak, growth, peakAnon - baselineAnon, (long)(1.5 * (largest + shard)), growth / (double)(largest + shard), seconds, samples);
            log?.WriteLine($"merge memory: two {modelBytes / 1e6:F1} MB models ({result.Method}, {report.Shards} output shards of at most {shard / 1e6:F1} MB, " +
                           $"largest tensor {largest / 1e6:F2} MB): peak RSS growth {growth / 1e6:F1} MB (anonymous {result.PeakAnonGrowthBytes / 1e6:F1} MB) " +
                           $"vs bound 1.5 x (tensor + shard) = {result.BoundBytes / 1e6:F1} MB: ratio {result.Ratio:F3} {(result.WithinBound ? "< 1.5, holds" : ">= 1.5, DOES NOT HOLD")} ({samples} samples, {seconds:F1} s)");
            return result;
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>(VmRSS, RssAnon) in bytes from /proc/self/status; elsewhere the working set twice.</summary>
    static (long Rss, long Anon) Resident()
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status))
        {
            using var p = Process.GetCurrentProcess();
            return (p.WorkingSet64, p.WorkingSet64);
        }
        long rss = 0, anon = 0;
        foreach (var line in File.ReadLines(status))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kb(line);
            else if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) anon = Kb(line);
        }
        return (rss, anon);
    }

    static long Kb(string line) => long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0]) * 1024;
}
