using System.Diagnostics;
using Research.Data;
using Research.Models;
using Research.Stages.Merge;

namespace Research.Bench;

/// <param name="CheckpointBytes">Bytes of one input's model.safetensors.</param>
/// <param name="MergeBytesPerS">(bytes of both inputs + bytes written) / time of StreamingMerge.Run (linear, two checkpoints, each shard flushed to disk).</param>
/// <param name="DurableCopyBytesPerS">The same bytes / time of a durable streaming copy: read both inputs, write one output of the merge's size,
/// fsync it; what a merge that must reach the disk could do at best with free arithmetic.</param>
/// <param name="FileCopyBytesPerS">(bytes read + written) / time of File.Copy of one input (page cache to page cache, no flush). Information.</param>
/// <param name="MemoryCopyBytesPerS">(bytes read + written) / time of Buffer.BlockCopy of one input's size in memory. Information.</param>
/// <param name="MemoryFsMergeBytesPerS">The same merge with its output in /dev/shm (tmpfs: a flush costs nothing), i.e. the merge's own work;
/// NaN where there is no /dev/shm with room. Information.</param>
/// <param name="Rounds">Interleaved rounds of (merge, durable copy); each figure is the best of them.</param>
public sealed record MergeResult(long CheckpointBytes, double MergeBytesPerS, double DurableCopyBytesPerS, double FileCopyBytesPerS, double MemoryCopyBytesPerS,
    double MemoryFsMergeBytesPerS, int Rounds)
{
    /// <summary>MergeBytesPerS / DurableCopyBytesPerS: the goal is at least 0.7.</summary>
    public double MergeBandwidthRatio => MergeBytesPerS / DurableCopyBytesPerS;
    /// <summary>MergeBytesPerS / MemoryCopyBytesPerS (the definition before 2026-12, unreachable for a flushed merge). Information.</summary>
    public double MemoryCopyRatio => MergeBytesPerS / MemoryCopyBytesPerS;
    /// <summary>MergeBytesPerS / FileCopyBytesPerS. Information.</summary>
    public double FileCopyRatio => MergeBytesPerS / FileCopyBytesPerS;
}

public static partial class Benchmarks
{
    /// <summary>
    /// StreamingMerge.Run (linear, two seeded checkpoints of <paramref name="model"/>) against a durable streaming copy of the
    /// same bytes, in interleaved rounds (best of each, at most 3 rounds within the budget); File.Copy, a memory copy and the
    /// merge into tmpfs as information.
    /// </summary>
    public static MergeResult Merge(ModelConfig model, Budget? budget = null)
    {
        var root = Path.Combine(Path.GetTempPath(), "research-bench", "merge-" + Guid.NewGuid().ToString("N"));
        try
        {
            string[] inputs = [Path.Combine(root, "a"), Path.Combine(root, "b")];
            for (int i = 0; i < 2; i++)
            {
                using var m = new CausalLM(model, seed: i + 1);
                Checkpoint.Save(inputs[i], m, ByteTokenizer.Instance);
            }
            string[] files = [.. inputs.Select(d => Path.Combine(d, Safetensors.SingleFileName))];
            var size = new FileInfo(files[0]).Length;
            var half = new Dictionary<string, ParamSetting> { ["weight"] = ParamSetting.Constant(0.5) };
            var config = new MergeConfig { Method = MergeMethod.Linear, Models = inputs.Select(p => new MergeModel(p, half)).ToArray() };
            var output = Path.Combine(root, "merged");
            double MergeOnce(string dir)
            {
                if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
                var sw = Stopwatch.StartNew();
                StreamingMerge.Run(config, dir);
                return sw.Elapsed.TotalSeconds;
            }
            var copyOut = Path.Combine(root, "durable-copy.safetensors");
            double mergeBest = double.MaxValue, durableBest = double.MaxValue;
            var rounds = 0;
            while (budget?.Another(rounds, 3) ?? rounds < 3)
            {
                mergeBest = Math.Min(mergeBest, MergeOnce(output));
                durableBest = Math.Min(durableBest, DurableCopy(files, copyOut, size));
                rounds++;
            }
            var outBytes = new FileInfo(Path.Combine(output, Safetensors.SingleFileName)).Length;
            double fileCopyBest = double.MaxValue, memBest = double.MaxValue;
            var src = new byte[size];
            var dst = new byte[size];
            new Random(1).NextBytes(src);
            for (int i = 0; i < 3; i++)
            {
                var copy = Path.Combine(root, "copy.safetensors");
                var sw = Stopwatch.StartNew();
                File.Copy(files[0], copy, overwrite: true);
                fileCopyBest = Math.Min(fileCopyBest, sw.Elapsed.TotalSeconds);
                File.Delete(copy);
                sw.Restart();
                Buffer.BlockCopy(src, 0, dst, 0, src.Length);
                memBest = Math.Min(memBest, sw.Elapsed.TotalSeconds);
            }
            // The same merge with its output on tmpfs: no disk behind the page cache, so what is left is the merge's own work.
            const string shm = "/dev/shm";
            var memoryFs = double.NaN;
            if (Directory.Exists(shm) && new DriveInfo(shm).AvailableFreeSpace > 4 * size)
            {
                var shmOut = Path.Combine(shm, "research-bench-merge-" + Guid.NewGuid().ToString("N"));
                try { memoryFs = (2.0 * size + outBytes) / MergeOnce(shmOut); }
                finally
                {
                    if (Directory.Exists(shmOut)) Directory.Delete(shmOut, recursive: true);
                }
            }
            var traffic = 2.0 * size + outBytes;
            return new MergeResult(size, traffic / mergeBest, traffic / durableBest, 2.0 * size / fileCopyBest, 2.0 * size / memBest, memoryFs, rounds);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>
    /// Reads every input in 4 MB chunks, writes <paramref name="outputBytes"/> of them (the first input's) to one output file and
    /// flushes it to disk (fsync): the I/O a merge must do, with no arithmetic. Returns the seconds.
    /// </summary>
    public static double DurableCopy(IReadOnlyList<string> inputs, string output, long outputBytes)
    {
        const int chunk = 4 << 20;
        var buffers = inputs.Select(_ => new byte[chunk]).ToArray();
        var sw = Stopwatch.StartNew();
        var readers = inputs.Select(p => new FileStream(p, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan)).ToArray();
        try
        {
            using var writer = new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.None, 1);
            long written = 0;
            while (true)
            {
                var got = 0;
                for (int i = 0; i < readers.Length; i++)
                {
                    var n = readers[i].ReadAtLeast(buffers[i], chunk, throwOnEndOfStream: false);
                    if (i == 0) got = n;
                }
                if (got == 0) break;
                var take = (int)Math.Min(got, outputBytes - written);
                if (take > 0) writer.Write(buffers[0], 0, take);
                written += take;
            }
            writer.Flush(flushToDisk: true);
        }
        finally
        {
            foreach (var r in readers) r.Dispose();
        }
        var seconds = sw.Elapsed.TotalSeconds;
        File.Delete(output);
        return seconds;
    }
}
