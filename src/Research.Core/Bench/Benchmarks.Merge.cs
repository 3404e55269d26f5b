using System.Diagnostics;
using Research.Data;
using Research.Models;
using Research.Stages.Merge;

namespace Research.Bench;

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

public static partial class Benchmarks
{
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
