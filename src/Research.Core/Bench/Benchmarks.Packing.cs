using System.Diagnostics;
using Research.Data;

namespace Research.Bench;

/// <param name="ByteTokenizerMbPerS">UTF-8 megabytes (1e6) of QuickWorld text per second through Packing.Pack with ByteTokenizer.</param>
public sealed record PackingResult(long Bytes, double ByteTokenizerMbPerS);

public static partial class Benchmarks
{
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
}
