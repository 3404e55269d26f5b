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
}
