using Research.Data;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>What a rollout sampler draws: the sampling filters, the completions per prompt and when a completion ends.</summary>
public sealed record RolloutOptions
{
    /// <summary>Completions per prompt (GRPO's G), drawn together in one batch over a shared KV cache.</summary>
    public int Completions { get; init; } = 4;
    public int MaxNewTokens { get; init; } = 32;
    /// <summary>Softmax temperature; log-probs are of the same temperature-scaled distribution. Must be &gt; 0.</summary>
    public double Temperature { get; init; } = 1.0;
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    /// <summary>Completion j of prompt i draws from a stream seeded by (Seed, i, j): the same seed, the same rollouts.</summary>
    public long Seed { get; init; }
    public IReadOnlyList<int> StopTokens { get; init; } = [];
    /// <summary>A completion whose decoded text contains one of these ends there (the tokenizer is then required).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
}

/// <summary>
/// One sampled completion: its tokens, the log-probability of each under the policy's temperature-scaled distribution
/// at sampling time (before top-k/top-p filtering, as training recomputes it), and why it ended.
/// </summary>
public sealed record Rollout(int Prompt, int Completion, int[] Tokens, float[] LogProbs, bool Stopped);

/// <summary>
/// The sampler of on-policy training: per prompt, its completions are one batch over one KV cache (the prompt is read
/// once for all of them), each with its own seeded generator. <see cref="Recompute"/> gives the same tokens' log-probs
/// from one full forward pass, as the training step sees them; <see cref="MaxDifference"/> compares the two.
/// </summary>
public static class Rollouts
{
    public static IReadOnlyList<Rollout> Sample(CausalLM model, IReadOnlyList<IReadOnlyList<int>> prompts, RolloutOptions options, ITokenizer? tokenizer = null)
    {
        if (options.Completions < 1) throw new ArgumentException($"rollouts: completions per prompt must be at least 1 (got {options.Completions})");
        if (!(options.Temperature > 0)) throw new ArgumentException($"rollouts: temperature must be > 0 (got {options.Temperature}); on-policy training samples");
        if (options.StopStrings.Count > 0 && tokenizer is null) throw new ArgumentException("rollouts: stop strings need the tokenizer to decode completions");
        var result = new List<Rollout>();
        for (var i = 0; i < prompts.Count; i++) result.AddRange(SampleOne(model, i, prompts[i], options, tokenizer));
        return result;
    }

    static IReadOnlyList<Rollout> SampleOne(CausalLM model, int index, IReadOnlyList<int> prompt, RolloutOptions o, ITokenizer? tokenizer)
    {
        if (prompt.Count == 0) throw new ArgumentException($"rollouts: prompt {index} is empty: give at least one token (e.g. BOS)");
        var limit = model.Config.MaxPositionEmbeddings;
        if (prompt.Count + o.MaxNewTokens > limit)
            throw new ArgumentException($"rollouts: prompt {index} has {prompt.Count} tokens; with {o.MaxNewTokens} new tokens it exceeds the context of {limit}: shorten the prompt or lower MaxNewTokens");
        var g = o.Completions;
        var device = model.EmbeddingWeight.device;
        var wasTraining = model.training;
        model.eval();
        using var noGrad = no_grad();
        var generators = Enumerable.Range(0, g).Select(j => new Generator(Rng.Derive(o.Seed, index, j), device)).ToArray();
        using var cache = new KvCache(model.Config, g, prompt.Count + o.MaxNewTokens, model.EmbeddingWeight.dtype, device);
        var tokens = Enumerable.Range(0, g).Select(_ => new List<int>()).ToArray();
        var logProbs = Enumerable.Range(0, g).Select(_ => new List<float>()).ToArray();
        var stopped = new bool[g];
        var next = Enumerable.Repeat(prompt.Select(t => (long)t).ToArray(), g).ToArray();
        try
        {
            for (var step = 0; step < o.MaxNewTokens && !stopped.All(s => s); step++)
            {
                using var scope = NewDisposeScope();
                var width = next[0].Length;
                var ids = tensor(next.SelectMany(x => x).ToArray(), dtype: int64, device: device).view(g, width);
                var scaled = model.Forward(ids, cache: cache)[.., -1].to(float32) / o.Temperature;      // (G, V)
                var logp = scaled.log_softmax(-1);
                var picked = new long[g];
                for (var j = 0; j < g; j++)
                {
                    if (stopped[j]) { picked[j] = next[j][^1]; continue; }                               // a finished row idles
                    var filtered = Generation.Filter(scaled[j], o.TopK, o.TopP);
                    picked[j] = multinomial(filtered.softmax(-1), 1, generator: generators[j]).item<long>();
                    tokens[j].Add((int)picked[j]);
                    logProbs[j].Add(logp[j, picked[j]].item<float>());
                    if (o.StopTokens.Contains((int)picked[j])
                        || (o.StopStrings.Count > 0 && tokenizer!.Decode(tokens[j].ToArray()) is var text && o.StopStrings.Any(s => text.Contains(s, StringComparison.Ordinal))))
                        stopped[j] = true;
                }
                next = picked.Select(t => new[] { t }).ToArray();
            }
        }
        finally
        {
            foreach (var gen in generators) gen.Dispose();
            if (wasTraining) model.train();
        }
        return Enumerable.Range(0, g).Select(j => new Rollout(index, j, tokens[j].ToArray(), logProbs[j].ToArray(), stopped[j])).ToArray();
    }

    /// <summary>
    /// The log-probs of a completion's tokens after its prompt from one full forward pass (no cache), at the sampler's
    /// temperature: what a training step computes for the same tokens.
    /// </summary>
    public static float[] Recompute(CausalLM model, IReadOnlyList<int> prompt, IReadOnlyList<int> completion, double temperature)
    {
        if (completion.Count == 0) return [];
        var device = model.EmbeddingWeight.device;
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var seq = prompt.Concat(completion).Select(t => (long)t).ToArray();
            var logits = model.Forward(tensor(seq[..^1], dtype: int64, device: device).unsqueeze(0))[0].to(float32) / temperature;
            var logp = logits.log_softmax(-1)[(prompt.Count - 1)..];                                     // rows predicting the completion
            var targets = tensor(completion.Select(t => (long)t).ToArray(), dtype: int64, device: device).unsqueeze(1);
            return logp.gather(1, targets).squeeze(1).data<float>().ToArray();
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>The largest |sampler log-prob - recomputed log-prob| over every token of the rollouts (0 when none).</summary>
    public static double MaxDifference(CausalLM model, IReadOnlyList<IReadOnlyList<int>> prompts, IReadOnlyList<Rollout> rollouts, double temperature)
    {
        var worst = 0.0;
        foreach (var r in rollouts)
        {
            var again = Recompute(model, prompts[r.Prompt], r.Tokens, temperature);
            for (var t = 0; t < again.Length; t++) worst = Math.Max(worst, Math.Abs(again[t] - r.LogProbs[t]));
        }
        return worst;
    }
}
