using System.Diagnostics;
using Research.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Bench;

public static partial class Benchmarks
{
    /// <summary>nanoGPT's estimate_mfu: 6N + 12·L·(heads·head_dim)·T FLOPs per token (forward + backward).</summary>
    public static double FlopsPerToken(ModelConfig c, long parameters, int blockLength) =>
        6.0 * parameters + 12.0 * c.NumHiddenLayers * c.NumAttentionHeads * c.HeadDim * blockLength;

    /// <summary>Parameters that do a matmul per token: all of them when the embedding is tied (it is the LM head), else all but the input embedding (a lookup).</summary>
    public static long MatmulParameters(CausalLM model) =>
        model.ParameterCount() - (model.Config.TieWordEmbeddings ? 0 : model.EmbeddingWeight.numel());

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
    /// X of B·T rows; in <paramref name="dtype"/>, after one warm-up pass; up to <paramref name="repeats"/> passes within the budget.
    /// </summary>
    public static double MatmulRate(BenchSize s, ScalarType dtype, int repeats, Device device, Budget? budget = null)
    {
        using var meter = new MatmulMeter(s, dtype, device);
        double flops = 0, seconds = 0;
        for (int r = 0; budget?.Another(r, repeats) ?? r < repeats; r++)
        {
            var (f, t) = meter.Pass();
            flops += f;
            seconds += t;
        }
        return flops / seconds;
    }
}

/// <summary>The matmuls of <see cref="Benchmarks.MatmulRate"/>, allocated once, so passes can be interleaved with the training rounds.</summary>
public sealed class MatmulMeter : IDisposable
{
    readonly TorchSharp.DisposeScope _scope;
    readonly (Tensor X, Tensor W, Tensor DY, int Count)[] _shapes;

    public MatmulMeter(BenchSize s, ScalarType dtype, Device device)
    {
        _scope = NewDisposeScope();
        var m = (long)s.BatchSize * s.BlockLength;
        _shapes = Benchmarks.LinearShapes(s.Model).Select(x => (randn(m, x.In, dtype: dtype, device: device), randn(x.Out, x.In, dtype: dtype, device: device),
            randn(m, x.Out, dtype: dtype, device: device), x.Count)).ToArray();
        Pass();   // warm-up
    }

    /// <summary>One pass over every linear's three products: (FLOPs, seconds).</summary>
    public (double Flops, double Seconds) Pass()
    {
        double flops = 0;
        var clock = Stopwatch.StartNew();
        foreach (var (x, w, dy, n) in _shapes)
            for (int i = 0; i < n; i++)
            {
                using (var y = F.linear(x, w)) { }
                using (var dx = matmul(dy, w)) { }
                using (var dyT = dy.t())
                using (var dw = matmul(dyT, x)) { }
                flops += 3 * 2.0 * x.shape[0] * x.shape[1] * w.shape[0];
            }
        using (var one = _shapes[0].X.reshape(-1)[0]) one.to(float32).item<float>();
        return (flops, clock.Elapsed.TotalSeconds);
    }

    public void Dispose() => _scope.Dispose();
}
