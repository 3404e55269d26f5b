using System.Diagnostics;
using Research.Data;
using Research.Models;

namespace Research.Bench;

public static partial class Benchmarks
{
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
}
