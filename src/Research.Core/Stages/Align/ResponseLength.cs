using Research.Data;
using Research.Models;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>
/// K answers sampled to one prompt: <see cref="Samples"/> (EOS stops, not counted), and per answer the expected length of a
/// sampled answer given the path it followed (<see cref="Expected"/>, tokens) and whether it ran to the token cap.
/// </summary>
public sealed record SampledAnswers(AlignItem Item, int[][] Samples, double[] Expected, bool[] Capped);

/// <summary>
/// Mean response length of sampled answers, measured two ways from the same random numbers. At step t the model gives the
/// stop probability s_t = p(EOS | prompt, y_&lt;t). A plain sample stops when a uniform u_t &lt; s_t, else draws y_t from p
/// without EOS (renormalised); its length L is the number of tokens before EOS, capped at N. The path of non-EOS tokens goes
/// on to N whether or not the sample stopped, and along it P(L &gt;= t | path) = prod_{k&lt;=t} (1 - s_k), so
/// E[min(L, N) | path] = sum_{t=1..N} prod_{k&lt;=t} (1 - s_k): the same expectation as the plain sampled length (unbiased),
/// with the stop decisions integrated out exactly instead of drawn (Rao-Blackwellised), so its mean over paths has a smaller
/// variance. Path j of a prompt draws from its own generator (seed(j)), two uniforms per step whatever happened before, so
/// every model is measured on the same random numbers. The K paths run as one batch.
/// </summary>
public static class ResponseLength
{
    /// <summary>Survival below which a path that already stopped no longer changes the expectation (by at most N times this).</summary>
    public const double Negligible = 1e-9;

    public static SampledAnswers Sample(CausalLM model, AlignItem item, int paths, int maxNewTokens, double temperature, double topP, int eos, Func<int, long> seedOf)
    {
        if (paths < 1 || maxNewTokens < 1 || !(temperature > 0) || !(topP > 0 && topP <= 1))
            throw new ArgumentException($"response length: paths ({paths}) and max_new_tokens ({maxNewTokens}) must be >= 1, temperature ({temperature}) > 0, top_p ({topP}) in (0, 1]");
        var prompt = item.First.Tokens[..item.First.PromptLength];
        var device = model.EmbeddingWeight.device;
        var capacity = prompt.Length + maxNewTokens;
        if (capacity > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"response length: prompt of {prompt.Length} tokens + {maxNewTokens} new ones exceed max_position_embeddings {model.Config.MaxPositionEmbeddings}");
        var rngs = Enumerable.Range(0, paths).Select(j => new Rng(seedOf(j))).ToArray();
        var samples = Enumerable.Range(0, paths).Select(_ => new List<int>()).ToArray();
        var stopped = new bool[paths];
        var survival = Enumerable.Repeat(1.0, paths).ToArray();
        var expected = new double[paths];
        var wasTraining = model.training;
        model.eval();
        using var noGrad = no_grad();
        using var cache = new KvCache(model.Config, paths, capacity, model.EmbeddingWeight.dtype, device);
        var next = new long[paths * prompt.Length];
        for (int j = 0; j < paths; j++) for (int t = 0; t < prompt.Length; t++) next[j * prompt.Length + t] = prompt[t];
        var width = prompt.Length;
        try
        {
            for (int step = 0; step < maxNewTokens; step++)
            {
                float[] logits;
                int vocab;
                using (var scope = NewDisposeScope())
                {
                    var ids = tensor(next, dtype: int64, device: device).view(paths, width);            // (K, t)
                    var last = model.Forward(ids, cache: cache).select(1, -1).to(float32).cpu();         // (K, V)
                    vocab = (int)last.shape[1];
                    logits = last.data<float>().ToArray();
                }
                next = new long[paths];
                width = 1;
                for (int j = 0; j < paths; j++)
                {
                    var p = Distribution(logits.AsSpan(j * vocab, vocab), temperature, topP);
                    var s = p[eos];
                    var u = rngs[j].NextDouble();   // the stop decision
                    var v = rngs[j].NextDouble();   // the next token if it goes on
                    if (!stopped[j] && u < s) stopped[j] = true;
                    survival[j] *= 1 - s;
                    expected[j] += survival[j];
                    var token = NonStop(p, eos, v * (1 - s));
                    if (!stopped[j]) samples[j].Add(token);
                    next[j] = token;
                }
                if (stopped.All(x => x) && survival.All(x => x < Negligible)) break;
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return new SampledAnswers(item, samples.Select(s => s.ToArray()).ToArray(), expected, stopped.Select(x => !x).ToArray());
    }

    /// <summary>Softmax of logits / temperature over the top-p nucleus (the smallest most-probable set reaching top-p), in double.</summary>
    static double[] Distribution(ReadOnlySpan<float> logits, double temperature, double topP)
    {
        var p = new double[logits.Length];
        var max = double.NegativeInfinity;
        for (int i = 0; i < p.Length; i++) max = Math.Max(max, logits[i] / temperature);
        double z = 0;
        for (int i = 0; i < p.Length; i++) z += p[i] = Math.Exp(logits[i] / temperature - max);
        for (int i = 0; i < p.Length; i++) p[i] /= z;
        if (topP >= 1) return p;
        var order = Enumerable.Range(0, p.Length).OrderByDescending(i => p[i]).ThenBy(i => i).ToArray();
        double kept = 0;
        int n = 0;
        while (n < order.Length && kept < topP) kept += p[order[n++]];
        for (int r = n; r < order.Length; r++) p[order[r]] = 0;
        for (int i = 0; i < p.Length; i++) p[i] /= kept;
        return p;
    }

    /// <summary>The non-stop token at mass <paramref name="target"/> of p's cumulative distribution with the stop token left out.</summary>
    static int NonStop(double[] p, int stop, double target)
    {
        int last = -1;
        double c = 0;
        for (int i = 0; i < p.Length; i++)
        {
            if (i == stop || p[i] <= 0) continue;
            last = i;
            c += p[i];
            if (target < c) return i;
        }
        return last >= 0 ? last : (stop == 0 ? 1 : 0);   // rounding at the top end, or only the stop token left (survival is 0 then)
    }
}
