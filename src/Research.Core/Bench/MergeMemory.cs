using System.Diagnostics;
using Research.Data;
using Research.Models;
using Research.Stages.Merge;
using static TorchSharp.torch;

namespace Research.Bench;

/// <summary>
/// Peak memory of a streaming merge of two models. <see cref="PeakAnonGrowthBytes"/>: the most the process's anonymous resident
/// memory (RssAnon = resident - file-backed, from /proc/self/statm, sampled every millisecond by a background thread that
/// allocates nothing) rose above its reading just before the merge. Anonymous memory is what the merge allocates (tensors,
/// buffers, the managed heap); file-backed pages (the page cache of mapped files) are the kernel's to drop and are reported apart
/// in <see cref="PeakGrowthBytes"/> (total VmRSS growth). The measured merge is the second of two identical ones, so one-time
/// costs (JIT, first use of ops, thread pools) are not counted, and before it the managed heap is collected and the C allocator's
/// free pages are returned (malloc_trim), so memory freed by the warm-up merge is not reused for free.
/// <see cref="BoundBytes"/> = 1.5 × (largest tensor + largest output shard); <see cref="Ratio"/> = anonymous growth / (largest
/// tensor + shard), so the claim "peak memory stays under 1.5 × (largest tensor + output shard)" holds when Ratio &lt; 1.5.
/// </summary>
public sealed record MergeMemoryResult(
    long ModelBytes, long LargestTensorBytes, long OutputShardBytes, int Shards, string Method,
    long BaselineRssBytes, long PeakRssBytes, long PeakGrowthBytes, long PeakAnonGrowthBytes, long BoundBytes, double Ratio, double Seconds, int Samples)
{
    public bool WithinBound => PeakAnonGrowthBytes < BoundBytes;

    /// <summary>Below this bound the process's own resident-memory noise (a megabyte or so: the managed heap, thread stacks)
    /// is a large share of it, so the ratio is printed but not judged (the micro models of the smallest bench and the tests).</summary>
    public const long JudgedFromBytes = 16_000_000;

    /// <summary>Whether the bound is large enough for the ratio to be a verdict on the merge rather than on RSS noise.</summary>
    public bool Judged => BoundBytes >= JudgedFromBytes;

    /// <summary>The ratio's reading: holds / DOES NOT HOLD, or why there is no verdict.</summary>
    public string Verdict => !Judged ? $"(bound under {JudgedFromBytes / 1e6:F0} MB: RSS noise, not a verdict)"
        : WithinBound ? "< 1.5, holds" : ">= 1.5, DOES NOT HOLD";
}

public static class MergeMemory
{
    /// <summary>d_model 512, intermediate 1376, 6 layers, byte vocabulary, untied head: 19.3M float32 parameters, 77 MB per checkpoint.</summary>
    public static ModelConfig Model50MB => new()
    {
        VocabSize = 259, HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = 6, NumAttentionHeads = 8, NumKeyValueHeads = 4,
        MaxPositionEmbeddings = 256, TieWordEmbeddings = false,
    };

    /// <summary>Every merge method that takes a base and one fine-tune (model stock needs two fine-tunes).</summary>
    public static IReadOnlyList<MergeMethod> Methods { get; } = Enum.GetValues<MergeMethod>().Where(m => m != MergeMethod.ModelStock).ToArray();

    /// <summary>
    /// Writes a base and one fine-tune-like model (base + seeded noise) of <paramref name="model"/> to a temp directory, stream-merges
    /// them (TIES by default; output shards of at most <paramref name="maxShardBytes"/>, by default the one shard `research merge` writes) and samples the resident memory meanwhile.
    /// </summary>
    public static MergeMemoryResult Run(ModelConfig? model = null, long maxShardBytes = StreamingMerge.DefaultShardBytes, MergeMethod method = MergeMethod.Ties, TextWriter? log = null) =>
        RunMany(model, maxShardBytes, [method], log)[0];

    /// <summary>As <see cref="Run"/>, for several methods on the same two input models (written once), one result per method.</summary>
    /// <param name="budget">When given, methods after the first are measured only while it lasts.</param>
    public static IReadOnlyList<MergeMemoryResult> RunMany(ModelConfig? model, long maxShardBytes, IReadOnlyList<MergeMethod> methods, TextWriter? log = null,
        Budget? budget = null)
    {
        model ??= Model50MB;
        var root = Path.Combine(Path.GetTempPath(), "research-bench", "merge-memory-" + Guid.NewGuid().ToString("N"));
        try
        {
            string[] inputs = [Path.Combine(root, "base"), Path.Combine(root, "tuned")];
            using (var m = new CausalLM(model, seed: 1))
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
            var results = new List<MergeMemoryResult>();
            foreach (var method in methods)
            {
            if (budget is not null && !budget.Another(results.Count, methods.Count)) break;
            // What each method reads, from the registry: a weight of 1 per model, density 0.5, slerp's t 0.5.
            var spec = MergeMethods.Of(method);
            var own = spec.TakesWeights ? new Dictionary<string, ParamSetting> { ["weight"] = ParamSetting.Constant(1.0) } : [];
            var globals = new Dictionary<string, ParamSetting>();
            if (spec.Reads("t")) globals["t"] = ParamSetting.Constant(0.5);
            if (spec.Reads("density")) globals["density"] = ParamSetting.Constant(0.5);
            var config = new MergeConfig
            {
                Method = method, BaseModel = spec.NeedsBase ? inputs[0] : null,
                Models = spec.NeedsBase ? [new MergeModel(inputs[1], own)] : [.. inputs.Select(i => new MergeModel(i, own))],
                Parameters = globals,
            };
            // Warm-up: the same merge once, unmeasured (JIT, first use of each op, torch's thread pool).
            var warm = Path.Combine(root, "warm-up");
            StreamingMerge.Run(config, warm, maxShardBytes);
            Directory.Delete(warm, recursive: true);
            var output = Path.Combine(root, "merged-" + MergeConfig.MethodName(method));
            using var statm = new Statm();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            Backend.NativeAllocator.ReturnFreePages();
            var (baseline, baselineAnon) = statm.Read();
            long peak = baseline, peakAnon = baselineAnon;
            var samples = 0;
            var done = false;
            var sampler = new Thread(() =>
            {
                while (!Volatile.Read(ref done))
                {
                    var (rss, anon) = statm.Read();
                    if (rss > peak) peak = rss;
                    if (anon > peakAnon) peakAnon = anon;
                    samples++;
                    Thread.Sleep(1);
                }
            }) { IsBackground = true };
            // The sampler runs before the merge starts, so its own stack and first reads are in the baseline's neighbourhood.
            sampler.Start();
            while (Volatile.Read(ref samples) == 0) Thread.Yield();
            var clock = Stopwatch.StartNew();
            MergeReport report;
            try { report = StreamingMerge.Run(config, output, maxShardBytes); }
            finally
            {
                Volatile.Write(ref done, true);
                sampler.Join();
            }
            var seconds = clock.Elapsed.TotalSeconds;
            var (after, afterAnon) = statm.Read();
            peak = Math.Max(peak, after);
            peakAnon = Math.Max(peakAnon, afterAnon);
            var shard = Directory.GetFiles(output, "*.safetensors").Max(f => new FileInfo(f).Length);
            var growth = peak - baseline;
            var result = new MergeMemoryResult(modelBytes, largest, shard, report.Shards, MergeConfig.MethodName(method),
                baseline, peak, growth, peakAnon - baselineAnon, (long)(1.5 * (largest + shard)), (peakAnon - baselineAnon) / (double)(largest + shard), seconds, samples);
            log?.WriteLine($"merge memory: two {modelBytes / 1e6:F1} MB models ({result.Method}, {report.Shards} output shards of at most {shard / 1e6:F1} MB, " +
                           $"largest tensor {largest / 1e6:F2} MB): peak anonymous RSS growth {result.PeakAnonGrowthBytes / 1e6:F1} MB (all RSS {growth / 1e6:F1} MB) " +
                           $"vs bound 1.5 x (tensor + shard) = {result.BoundBytes / 1e6:F1} MB: ratio {result.Ratio:F3} {result.Verdict} ({samples} samples, {seconds:F1} s)");
            results.Add(result);
            Directory.Delete(output, recursive: true);
            }
            return results;
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>
    /// (VmRSS, RssAnon) in bytes from /proc/self/statm (resident and file-backed pages), read with a positioned read into a
    /// buffer made once, so sampling allocates nothing on the managed heap; elsewhere the working set twice.
    /// </summary>
    sealed class Statm : IDisposable
    {
        readonly Microsoft.Win32.SafeHandles.SafeFileHandle? _handle;
        readonly byte[] _buffer = new byte[256];
        readonly long _page = Environment.SystemPageSize;

        public Statm()
        {
            if (File.Exists("/proc/self/statm")) _handle = File.OpenHandle("/proc/self/statm", FileMode.Open, FileAccess.Read);
        }

        public (long Rss, long Anon) Read()
        {
            if (_handle is null)
            {
                using var p = Process.GetCurrentProcess();
                return (p.WorkingSet64, p.WorkingSet64);
            }
            var n = RandomAccess.Read(_handle, _buffer, 0);
            // "size resident shared text lib data dt", in pages; shared = file-backed + shmem resident pages.
            long size = 0, resident = 0, shared = 0;
            var field = 0;
            long value = 0;
            for (var i = 0; i <= n && field < 3; i++)
            {
                if (i < n && _buffer[i] >= (byte)'0' && _buffer[i] <= (byte)'9') { value = value * 10 + (_buffer[i] - '0'); continue; }
                if (field == 0) size = value; else if (field == 1) resident = value; else shared = value;
                field++;
                value = 0;
            }
            _ = size;
            return (resident * _page, (resident - shared) * _page);
        }

        public void Dispose() => _handle?.Dispose();
    }
}
